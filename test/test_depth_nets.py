"""Depth networks: budgets, shapes, radar-free operation, ONNX parity, weights I/O, factory errors."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from depth_nodes.camera import PinholeCamera
from depth_nodes.depth.flops import count_macs, count_params
from depth_nodes.depth.interface import DepthInput, make_estimator, resolve_precision
from depth_nodes.depth.model_io import (WeightsNotFoundError, fold_batchnorm, init_from_weights, load_weights,
                                        save_weights)
from depth_nodes.depth.layers import upsample_to
from depth_nodes.depth.mono_radar_net import MonoRadarNet
from depth_nodes.depth.runtime import (OnnxBackend, RuntimeUnavailableError, TorchBackend, export_onnx,
                                      tensorrt_network_flags)
from depth_nodes.depth.stereo_net import StereoNet, correlation_volume, local_correlation, warp_right


@pytest.fixture(autouse=True)
def _torch_seed():
    torch.manual_seed(0)


def _imgs(h=240, w=320):
    g = torch.Generator().manual_seed(1)
    return torch.rand(1, 3, h, w, generator=g) * 255, torch.rand(1, 3, h, w, generator=g) * 255


def test_mono_radar_budget_and_outputs():
    net = MonoRadarNet().eval()
    img, _ = _imgs()
    radar = torch.zeros(1, 2, 240, 320)
    assert count_params(net) <= 3_000_000
    assert count_macs(net, img, radar) <= 1.5e9
    with torch.no_grad():
        depth, conf = net(img, radar)  # radar channels all zero = radar dropout
    assert depth.shape == conf.shape == (1, 1, 240, 320)
    assert torch.isfinite(depth).all()
    cfg = net.config
    assert depth.min() >= cfg["min_depth"] * 0.999 and depth.max() <= cfg["max_depth"] * 1.001
    assert conf.min() >= 0 and conf.max() <= 1


def test_mono_coarse_decoder_has_the_same_parameters_and_fewer_macs():
    fine, coarse = MonoRadarNet().eval(), MonoRadarNet(coarse_decoder=True).eval()
    assert {k: v.shape for k, v in fine.state_dict().items()} == {k: v.shape for k, v in coarse.state_dict().items()}
    assert coarse.config["coarse_decoder"] is True and "coarse_decoder" not in fine.config
    img, _ = _imgs()
    radar = torch.zeros(1, 2, 240, 320)
    assert count_macs(fine, img, radar) / 1e9 == pytest.approx(0.9505, abs=1e-3)  # the fine_decoder card's figure
    # each level's coarse part (cin x cout x 9 taps) at the coarser level's pixels (1/32: 8x10)
    saved = sum(cin * cout * 9 * (fine_px - coarse_px) for cin, cout, fine_px, coarse_px in
                ((128, 96, 15 * 20, 8 * 10), (96, 64, 30 * 40, 15 * 20), (64, 32, 60 * 80, 30 * 40),
                 (32, 16, 120 * 160, 60 * 80)))
    assert count_macs(coarse, img, radar) == pytest.approx(count_macs(fine, img, radar) - saved, rel=1e-6)
    coarse.load_state_dict(fine.state_dict())
    with torch.no_grad():
        d_fine, _ = fine(img, radar)
        d_coarse, c_coarse = coarse(img, radar)
    assert d_coarse.shape == d_fine.shape and torch.isfinite(d_coarse).all() and (c_coarse >= 0).all()
    assert not torch.allclose(d_coarse, d_fine)  # a different function of the same weights


def test_adopted_fine_decoder_kernels_match_it_on_smooth_maps():
    """On a map that varies linearly, the adapted kernel run at the coarse resolution and upsampled
    gives what the fine decoder's kernel gives on the upsampled map (away from the borders)."""
    torch.manual_seed(0)
    fine = MonoRadarNet().eval()
    coarse = MonoRadarNet(coarse_decoder=True).eval()
    coarse.load_state_dict(fine.state_dict())
    ys, xs = torch.meshgrid(torch.arange(12.0), torch.arange(16.0), indexing="ij")
    y = (0.3 * xs - 0.2 * ys + torch.randn(128, 1, 1)).unsqueeze(0)  # (1, 128, 12, 16), one plane per channel
    skip = torch.zeros(1, 96, 24, 32)

    def pre_activation(net):
        level = net.decoder[0]
        with torch.no_grad():
            return level[1](level[0](torch.cat([upsample_to(y, skip), skip], 1))) if not net.coarse_decoder else \
                level[1](upsample_to(torch.nn.functional.conv2d(y, level[0].weight[:, :128], padding=1), skip))

    want = pre_activation(fine)[..., 4:-4, 4:-4]
    before = (pre_activation(coarse)[..., 4:-4, 4:-4] - want).abs().max()
    coarse.adopt_fine_decoder_()
    after = (pre_activation(coarse)[..., 4:-4, 4:-4] - want).abs().max()
    assert after < 1e-4 * want.abs().max() < before
    with pytest.raises(ValueError, match="coarse_decoder"):
        fine.adopt_fine_decoder_()


def _with_running_stats(net):
    """``net`` with BatchNorm statistics and affine parameters unlike the defaults, so that a
    fold that forgot one of them shows."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
    return net


def test_mono_skip_kernel_1_folds_its_batchnorm_and_costs_fewer_macs():
    from depth_nodes.depth.mono_radar_net import SkipDecoderLevel

    light = _with_running_stats(MonoRadarNet(coarse_decoder=True, skip_kernel=1, head_kernel=1)).eval()
    coarse = MonoRadarNet(coarse_decoder=True).eval()
    assert light.config["skip_kernel"] == 1 and light.config["head_kernel"] == 1
    assert "skip_kernel" not in coarse.config and "head_kernel" not in coarse.config  # older cards: 3x3
    assert all(isinstance(level, SkipDecoderLevel) for level in light.decoder) and light.head.kernel_size == (1, 1)
    img, _ = _imgs()
    radar = torch.zeros(1, 2, 240, 320)
    # every skip conv (cskip x cout) and the head (16 x 2) lose 8 of their 9 taps, at their levels' pixels
    saved = sum(cskip * cout * 8 * px for cskip, cout, px in
                ((96, 96, 15 * 20), (64, 64, 30 * 40), (32, 32, 60 * 80), (16, 16, 120 * 160))) + 16 * 2 * 8 * 120 * 160
    assert count_macs(light, img, radar) == pytest.approx(count_macs(coarse, img, radar) - saved, rel=1e-6)
    assert count_macs(light, img, radar) < 0.61e9
    small, _ = _imgs(48, 64)
    radar = torch.rand(1, 2, 48, 64)
    with torch.no_grad():
        want = light(small, radar)
        folded = fold_batchnorm(light)
        got = folded(small, radar)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    mixed = MonoRadarNet(coarse_decoder=True, skip_kernel=[3, 3, 1, 1])  # one kernel per level, coarsest first
    assert mixed.config["skip_kernel"] == [3, 3, 1, 1] and "head_kernel" not in mixed.config
    assert [isinstance(level, SkipDecoderLevel) for level in mixed.decoder] == [False, False, True, True]
    assert MonoRadarNet(**{k: v for k, v in mixed.config.items()}).config == mixed.config  # from its card
    full = torch.zeros(1, 2, 240, 320)
    assert count_macs(coarse, img, full) > count_macs(mixed, img, full) > count_macs(light, img, full)
    for bad in ({"skip_kernel": 1}, {"coarse_decoder": True, "skip_kernel": 5}, {"head_kernel": 2},
                {"coarse_decoder": True, "skip_kernel": [1, 3, 1]}, {"skip_kernel": [3, 3, 3, 1]}):
        with pytest.raises(ValueError, match="kernel"):
            MonoRadarNet(**bad)


def test_mono_skip_kernel_1_starts_from_a_3x3_network(tmp_path):
    """init_from_weights converts a 3x3 coarse decoder: the coarse kernels as they are, each
    1x1 kernel the sum of its 3x3 taps, so on skip features constant over the image (away from
    the border) each level's pre-activation is the 3x3 level's."""
    from depth_nodes.depth.mono_radar_net import SkipDecoderLevel

    src = _with_running_stats(MonoRadarNet(coarse_decoder=True)).eval()
    path = save_weights(src, tmp_path / "src.safetensors", {"model": "mono_radar"})
    light = MonoRadarNet(coarse_decoder=True, skip_kernel=1, head_kernel=1)
    counts = init_from_weights(light, path)
    assert counts["copied"] == len(light.state_dict()) and counts["widened"] == 0
    light.eval()
    torch.testing.assert_close(light.head.weight, src.head.weight.sum(dim=(2, 3), keepdim=True))
    for i, (a, b) in enumerate(zip(light.decoder, src.decoder)):
        assert isinstance(a, SkipDecoderLevel)
        torch.testing.assert_close(a.bn.running_var, b[1].running_var)
        y = torch.randn(1, a.cin, 6, 8)
        skip = torch.ones(1, a.skip.in_channels, 12, 16) * torch.randn(1, a.skip.in_channels, 1, 1)
        with torch.no_grad():
            want = b[1](upsample_to(torch.nn.functional.conv2d(y, b[0].weight[:, :a.cin], padding=1), skip)
                        + torch.nn.functional.conv2d(skip, b[0].weight[:, a.cin:], padding=1))
            got = a.bn(upsample_to(a.coarse(y), skip) + a.skip(skip))
        torch.testing.assert_close(got[..., 1:-1, 1:-1], want[..., 1:-1, 1:-1], rtol=1e-4, atol=1e-4)
        assert not torch.allclose(got[..., 0, :], want[..., 0, :], atol=1e-3)  # the 3x3 kernel's zero padding


def test_random_init_builds_the_packaged_architecture(monkeypatch, tmp_path):
    import json

    from depth_nodes.depth import model_io
    from depth_nodes.depth.runtime import load_network

    for name in ("mono_radar", "stereo"):  # as packaged
        net, card, status = load_network(name, "random-init")
        assert status == "random-init" and card is None and net.config == model_io.read_card(
            model_io.default_weights(name))["architecture"]["config"]
    monkeypatch.setattr(model_io, "WEIGHTS_DIR", tmp_path)
    assert load_network("mono_radar", "random-init")[0].config == MonoRadarNet().config  # nothing packaged
    (tmp_path / "mono_radar.json").write_text(json.dumps(
        {"architecture": {"class": "MonoRadarNet", "config": {**MonoRadarNet().config, "coarse_decoder": True}}}))
    assert load_network("mono_radar", "random-init")[0].coarse_decoder
    assert not load_network("mono_radar", "random-init", coarse_decoder=False)[0].coarse_decoder  # overrides win


def test_mono_radar_uses_radar_channels():
    net = MonoRadarNet().eval()
    img, _ = _imgs(48, 64)
    radar = torch.zeros(1, 2, 48, 64)
    radar[0, :, 20:24, 30:34] = torch.tensor([0.2, 1.0]).view(2, 1, 1)
    with torch.no_grad():
        d0, _ = net(img, torch.zeros_like(radar))
        d1, _ = net(img, radar)
    assert not torch.allclose(d0, d1)


def test_stereo_budget_and_outputs():
    net = StereoNet(max_disparity=64).eval()
    left, right = _imgs()
    assert count_params(net) <= 3_000_000
    assert count_macs(net, left, right) <= 1.5e9
    with torch.no_grad():
        disp, conf = net(left, right)
    assert disp.shape == conf.shape == (1, 1, 240, 320)
    assert (disp >= 0).all() and torch.isfinite(disp).all()
    assert conf.min() >= 0 and conf.max() <= 1


def test_correlation_volume_peaks_at_true_shift():
    g = torch.Generator().manual_seed(3)
    fl = torch.randn(1, 64, 10, 40, generator=g)
    shift = 5
    fr = torch.roll(fl, -shift, dims=3)  # right(x) = left(x + shift)  =>  left(x) = right(x - shift)
    vol = correlation_volume(fl, fr, candidates=12, groups=2)
    assert vol.shape == (1, 12, 2, 10, 40)
    best = vol.mean(dim=2)[0, :, :, shift:-shift].argmax(dim=0)
    assert (best == shift).float().mean() > 0.99


def test_warp_right_brings_the_match_under_each_left_pixel():
    g = torch.Generator().manual_seed(4)
    fl = torch.randn(2, 8, 12, 48, generator=g)
    fr = torch.roll(fl, -3, dims=3)  # left(x) = right(x - 3)
    inside = (slice(None), slice(None), slice(None), slice(3, None))
    # (grid coordinates are normalised to [-1, 1]: exact to float rounding)
    torch.testing.assert_close(warp_right(fr, torch.full((2, 1, 12, 48), 3.0))[inside], fl[inside],
                               atol=1e-4, rtol=1e-4)
    # half a pixel: the mean of the two neighbours
    half = warp_right(fr, torch.full((2, 1, 12, 48), 2.5))
    torch.testing.assert_close(half[..., 3:-1], 0.5 * (fl[..., 3:-1] + fl[..., 4:]), atol=1e-4, rtol=1e-4)


def test_warp_right_in_half_precision_keeps_sub_pixel_positions():
    # a wide image: in float16 x = 700 px is only representable to 0.5 px, so positions are formed
    # in float32; the result keeps the features' dtype
    g = torch.Generator().manual_seed(5)
    x = torch.arange(741, dtype=torch.float32)
    fr = torch.stack([torch.sin(x / 7.0), torch.cos(x / 11.0)]).view(1, 2, 1, 741).expand(1, 2, 4, 741)
    disp = 3.0 + 40.0 * torch.rand(1, 1, 4, 741, generator=g)
    ref = warp_right(fr, disp)
    got = warp_right(fr.half(), disp.half())
    assert got.dtype == torch.float16 and torch.isfinite(got).all()
    # what remains is float16 rounding of the features, the disparities (0.03 px at 40 px) and the result
    inside = (slice(None), slice(None), slice(None), slice(50, None))
    torch.testing.assert_close(got.float()[inside], ref[inside], atol=6e-3, rtol=0)


def test_local_correlation_peaks_where_the_coarse_disparity_is_off():
    g = torch.Generator().manual_seed(5)
    fl = torch.randn(1, 32, 10, 60, generator=g)
    fr = torch.roll(fl, -6, dims=3)  # true disparity 6
    coarse = torch.full((1, 1, 10, 60), 5.0)  # one pixel short
    corr = local_correlation(fl, fr, coarse, radius=2)
    assert corr.shape == (1, 5, 10, 60)
    best = corr[0, :, :, 8:-8].argmax(dim=0) - 2
    assert (best == 1).float().mean() > 0.99
    fine = local_correlation(fl, fr, coarse, radius=2, step=0.5)  # offsets -1, -0.5, ..., 1
    assert ((fine[0, :, :, 8:-8].argmax(dim=0) - 2) * 0.5 == 1.0).float().mean() > 0.99


def test_stereo_local_radius_widened_from_the_plain_network_starts_identical(tmp_path):
    torch.manual_seed(0)
    plain = StereoNet(max_disparity=16).eval()
    path = save_weights(plain, tmp_path / "stereo.safetensors")
    wide = StereoNet(max_disparity=16, local_radius=2)
    assert wide.config["local_radius"] == 2 and "local_radius" not in plain.config
    assert init_from_weights(wide, path) == {"copied": len(wide.state_dict()) - 1, "widened": 1}
    left, right = _imgs(h=48, w=64)
    with torch.no_grad():
        for a, b in zip(plain(left, right), wide.eval()(left, right)):
            torch.testing.assert_close(a, b)
    # the new cue is live: it changes the output once its weights are not zero
    with torch.no_grad():
        wide.refine[0][0].weight[:, -5:].normal_()
        assert not torch.allclose(wide(left, right)[0], plain(left, right)[0])
    with pytest.raises(ValueError, match="only extra input channels"):
        init_from_weights(StereoNet(max_disparity=16, features=16), path)
    with pytest.raises(ValueError, match="missing"):
        init_from_weights(MonoRadarNet(), path)
    with pytest.raises(ValueError, match="local_radius"):
        StereoNet(local_radius=-1)


def test_stereo_max_disparity_changes_without_new_weights():
    net = StereoNet(max_disparity=32).eval()
    n = count_params(net)
    net.set_max_disparity(64)
    assert count_params(net) == n and net.config["max_disparity"] == 64
    with pytest.raises(ValueError, match="multiple of 4"):
        net.set_max_disparity(30)


def _onnx_parity(net, inputs):
    onnx_bytes = export_onnx(net, inputs)
    backend = OnnxBackend(onnx_bytes)
    # its threads sleep between runs rather than spin and take the cores from the next session
    assert backend.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"
    ort_out = backend(inputs)
    with torch.no_grad():
        torch_out = [o.numpy() for o in net(*[torch.from_numpy(x) for x in inputs])]
    return torch_out, ort_out


@pytest.mark.parametrize("config", [{}, {"coarse_decoder": True},
                                    {"coarse_decoder": True, "skip_kernel": 1, "head_kernel": 1}])
def test_onnx_matches_torch_mono_radar(config):
    net = fold_batchnorm(_with_running_stats(MonoRadarNet(**config)).eval())
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 255, (1, 3, 48, 64)).astype(np.float32)
    radar = np.zeros((1, 2, 48, 64), np.float32)
    radar[0, :, 10, 10] = (0.25, 1.0)
    t, o = _onnx_parity(net, [img, radar])
    np.testing.assert_allclose(o[0], t[0], rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(o[1], t[1], atol=1e-4)


@pytest.mark.parametrize("local_radius", [0, 2])
def test_onnx_matches_torch_stereo(local_radius):
    net = StereoNet(max_disparity=16, local_radius=local_radius).eval()
    rng = np.random.default_rng(0)
    left = rng.uniform(0, 255, (1, 3, 48, 64)).astype(np.float32)
    right = np.roll(left, -4, axis=3)
    t, o = _onnx_parity(net, [left, right])
    np.testing.assert_allclose(o[0], t[0], rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(o[1], t[1], atol=1e-4)


def test_onnx_matches_torch_refiner():
    from depth_nodes.depth.refine_net import DisparityRefiner

    net = DisparityRefiner().eval()
    rng = np.random.default_rng(0)
    left = rng.uniform(0, 255, (1, 3, 48, 64)).astype(np.float32)
    disp = rng.uniform(0, 12, (1, 1, 48, 64)).astype(np.float32)
    source = (rng.random((1, 2, 48, 64)) > 0.5).astype(np.float32)
    t, o = _onnx_parity(net, [left, np.roll(left, -4, axis=3), disp, source])
    assert len(o) == 1
    np.testing.assert_allclose(o[0], t[0], rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("make", [MonoRadarNet, lambda: StereoNet(max_disparity=16)])
def test_cpu_backend_runs_channels_last_with_plain_outputs(make):
    """The CPU backend holds its weights channels_last (oneDNN for every convolution) and still
    returns contiguous NCHW arrays equal to the plain layout's."""
    net = make().eval()
    img, img2 = _imgs(48, 64)
    second = torch.rand(1, 2, 48, 64) if isinstance(net, MonoRadarNet) else img2
    with torch.no_grad():
        ref = [o.numpy().copy() for o in net(img, second)]
    backend = TorchBackend(net, "cpu")
    convs = [m for m in backend.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    outs = backend([img.numpy(), second.numpy()])
    for out, want in zip(outs, ref):
        assert out.flags["C_CONTIGUOUS"] and out.shape == want.shape
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("make", [MonoRadarNet, lambda: MonoRadarNet(coarse_decoder=True),
                                  lambda: MonoRadarNet(coarse_decoder=True, skip_kernel=1, head_kernel=1),
                                  lambda: StereoNet(max_disparity=16)])
def test_cpu_backend_runs_one_frozen_graph_per_input_shape(make):
    net = fold_batchnorm(make().eval())
    eager, frozen = TorchBackend(net, "cpu", freeze=False), TorchBackend(net, "cpu")
    assert frozen.freeze and not eager.freeze
    for h, w in ((48, 64), (32, 96), (48, 64)):
        img, img2 = _imgs(h, w)
        second = torch.rand(1, 2, h, w) if isinstance(net, MonoRadarNet) else img2
        inputs = [img.numpy(), second.numpy()]
        for got, want in zip(frozen(inputs), eager(inputs)):
            assert got.flags["C_CONTIGUOUS"] and got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # the third call reused the first shape's graph
    assert len(frozen._frozen) == 2 and all(isinstance(g, torch.jit.ScriptModule) for g in frozen._frozen.values())


def test_cpu_backend_runs_eagerly_where_it_cannot_trace(monkeypatch, caplog):
    def no_trace(*args, **kwargs):
        raise RuntimeError("no TorchScript here")

    monkeypatch.setattr(torch.jit, "trace", no_trace)
    net = MonoRadarNet().eval()
    backend = TorchBackend(net, "cpu")
    img, _ = _imgs(48, 64)
    radar = torch.zeros(1, 2, 48, 64)
    with caplog.at_level("WARNING", logger="depth_nodes.depth.runtime"):
        depth, _ = backend([img.numpy(), radar.numpy()])
    assert "could not trace MonoRadarNet" in caplog.text and "no TorchScript here" in caplog.text
    assert not backend.freeze and not backend._frozen
    with torch.no_grad():
        np.testing.assert_allclose(depth, net(img, radar)[0].numpy(), rtol=1e-4, atol=1e-4)


def test_cpu_backend_freeze_can_be_switched_off_by_environment(monkeypatch):
    from depth_nodes.depth.runtime import FREEZE_ENV

    monkeypatch.setenv(FREEZE_ENV, "0")
    assert not TorchBackend(MonoRadarNet(), "cpu").freeze
    monkeypatch.setenv(FREEZE_ENV, "1")
    assert TorchBackend(MonoRadarNet(), "cpu").freeze


@pytest.mark.parametrize("make", [MonoRadarNet, lambda: StereoNet(max_disparity=16)])
def test_fold_batchnorm_keeps_outputs(make):
    net = make().eval()
    for m in net.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    img, img2 = _imgs(48, 64)
    second = torch.rand(1, 2, 48, 64) if isinstance(net, MonoRadarNet) else img2
    with torch.no_grad():
        ref = net(img, second)[0]
        folded = fold_batchnorm(net)(img, second)[0]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    torch.testing.assert_close(folded, ref, rtol=1e-4, atol=1e-3)


def test_safetensors_round_trip(tmp_path):
    net = StereoNet(max_disparity=32).eval()
    path = save_weights(net, tmp_path / "stereo.safetensors", {"metrics": {"epe": 1.0}})
    assert path.read_bytes()[8:9] == b"{"  # safetensors: u64 header length, then a JSON header
    loaded, card = load_weights(path, max_disparity=48)
    assert card["metrics"]["epe"] == 1.0 and card["architecture"]["class"] == "StereoNet"
    assert loaded.max_disparity == 48
    for k, v in net.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v)


def test_loading_never_unpickles(tmp_path):
    net = MonoRadarNet()
    path = save_weights(net, tmp_path / "m.safetensors")
    torch.save(net.state_dict(), path)  # a pickle in disguise must be rejected, not executed
    with pytest.raises(Exception) as exc:
        load_weights(path)
    assert "pickle" not in type(exc.value).__name__.lower()


def test_factory_errors():
    with pytest.raises(WeightsNotFoundError, match="stereo.safetensors"):
        make_estimator("stereo", weights="/nonexistent/stereo.safetensors")
    with pytest.raises(ValueError, match="mode"):
        make_estimator("lidar")
    with pytest.raises(ValueError, match="runtime"):
        make_estimator("mono", runtime="tflite")
    with pytest.raises(ValueError, match="max_disparity"):
        make_estimator("sgbm", max_disparity=64)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeUnavailableError, match="tensorrt|CUDA"):
            make_estimator("mono", runtime="tensorrt", weights="random-init")
        with pytest.raises(RuntimeUnavailableError, match="cuda"):
            make_estimator("mono", device="cuda", weights="random-init")
        with pytest.raises(RuntimeUnavailableError, match="CUDAExecutionProvider"):
            make_estimator("stereo", runtime="onnx", device="cuda", weights="random-init")


def test_precision_follows_the_device_and_runtime():
    assert resolve_precision("auto", "torch", "cuda") == resolve_precision("auto", "tensorrt", "cuda") == "fp16"
    assert resolve_precision("auto", "torch", "cpu") == resolve_precision("auto", "onnx", "cuda") == "fp32"
    assert resolve_precision("fp16", "torch", "cpu") == "fp16" and resolve_precision("fp32", "torch", "cuda") == "fp32"
    with pytest.raises(ValueError, match="onnxruntime"):
        resolve_precision("fp16", "onnx", "cpu")
    with pytest.raises(ValueError, match="precision"):
        make_estimator("mono", precision="int8")
    with pytest.raises(ValueError, match="sgbm"):
        make_estimator("sgbm", precision="fp16")
    est = make_estimator("mono", runtime="torch", weights="random-init", precision="fp16")
    assert est.precision == "fp16" and est.runner._torch.half
    assert make_estimator("mono", runtime="torch", weights="random-init").precision == "fp32"
    # TensorRT 8 parses ONNX only into explicit-batch networks; TensorRT 10 has no other kind
    flags = SimpleNamespace(EXPLICIT_BATCH=0)
    assert tensorrt_network_flags(SimpleNamespace(__version__="8.6.2", NetworkDefinitionCreationFlag=flags)) == 1
    assert tensorrt_network_flags(SimpleNamespace(__version__="10.3.0", NetworkDefinitionCreationFlag=flags)) == 0


def test_estimators_end_to_end_random_init():
    cam = PinholeCamera.from_fov(96, 64, 80.0)
    rng = np.random.default_rng(0)
    left = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    inp = DepthInput(left, cam, np.zeros((0, 5), np.float32), np.roll(left, -4, axis=1), cam.with_baseline(0.1))
    for mode in ("mono", "mono-radar", "stereo"):
        est = make_estimator(mode, weights="random-init", net_size=(64, 48))
        out = est.estimate(inp)
        assert est.weights_status == "random-init"
        assert out.depth.shape == (64, 96) and out.depth.dtype == np.float32
        assert np.all((out.confidence >= 0) & (out.confidence <= 1))
        assert "network" in out.timings and out.timings["total"] >= out.timings["network"]


def test_hybrid_takes_sgbm_where_it_matches_and_the_network_in_its_holes():
    cam = PinholeCamera.from_fov(128, 96, 80.0)
    rng = np.random.default_rng(3)
    left = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    right = np.roll(left, -6, axis=1)
    right[:, 40:80] = rng.integers(0, 256, (96, 40, 3), dtype=np.uint8)  # a band without a true match
    inp = DepthInput(left, cam, None, right, cam.with_baseline(0.1))
    # the split between SGBM and the network (the near pass has its own tests)
    hybrid = make_estimator("stereo-hybrid", runtime="torch", weights="random-init", max_disparity=32,
                            agreement="first", near_pass=False, refine=False)
    net = make_estimator("stereo", runtime="torch", weights="random-init", max_disparity=32, near_pass=False)
    sgbm = make_estimator("sgbm", num_disparities=32, require_agreement=False)  # the first pass's pixels
    assert hybrid.name == "stereo-hybrid" and hybrid.requires_stereo and hybrid.no_return_is_far
    assert hybrid.sgbm_for(128).num_disparities == 32   # the network's range at this width
    assert hybrid.sgbm_for(30).num_disparities == 16    # kept narrower than the image
    disp, conf = hybrid.disparity(inp)
    sgbm_disp, sgbm_conf = sgbm.disparity(left, inp.right_rgb)
    net_disp, net_conf = net.disparity(inp)
    matched = np.isfinite(sgbm_disp)
    assert matched.mean() > 0.2 and (~matched).sum() > 100  # both sources are used
    np.testing.assert_array_equal(disp[matched], sgbm_disp[matched])
    np.testing.assert_allclose(disp[~matched], net_disp[~matched], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(conf[matched], sgbm_conf[matched])
    out = hybrid.estimate(inp)
    assert {"network", "sgbm", "fuse"} <= set(out.timings)
    from concurrent.futures import ThreadPoolExecutor

    hybrid._pool = ThreadPoolExecutor(1)  # the GPU path (SGBM beside the network), run on the CPU
    np.testing.assert_array_equal(hybrid.disparity(inp)[0], disp)
    assert np.isfinite(out.depth).mean() >= np.isfinite(make_estimator("sgbm", num_disparities=32).estimate(inp).depth).mean()
    with pytest.raises(ValueError, match="num_disparities"):
        make_estimator("stereo-hybrid", weights="random-init", num_disparities=20)
    with pytest.raises(ValueError, match="radar_dilate"):
        make_estimator("stereo-hybrid", weights="random-init", radar_dilate=1)
    with pytest.raises(ValueError, match="agreement"):
        make_estimator("stereo-hybrid", weights="random-init", agreement="any")


def test_hybrid_leaves_textureless_rows_to_the_network(monkeypatch):
    """``texture_min``: SGBM's match is dropped where the left image has no horizontal texture
    (a clear sky, a blank wall: every disparity fits there), the network's taken."""
    from depth_nodes.depth.runtime import HybridStereoEstimator
    from depth_nodes.depth.sgbm import horizontal_texture

    rng = np.random.default_rng(5)
    flat = np.full((48, 64, 3), 120, np.uint8)
    assert horizontal_texture(flat).max() == 0
    rows = np.repeat(np.linspace(0, 255, 48, dtype=np.uint8)[:, None, None], 64, axis=1).repeat(3, axis=2)
    assert horizontal_texture(rows)[10:-10, 10:-10].max() == 0  # changes down the image only: no use to matching
    left = rows.copy()
    left[:, 32:] = rng.integers(0, 256, (48, 32, 3), dtype=np.uint8)  # right half textured
    texture = horizontal_texture(left)
    assert texture[:, :20].max() == 0 and texture[:, 40:].min() > 50
    cam = PinholeCamera.from_fov(64, 48, 80.0)
    inp = DepthInput(left, cam, None, np.roll(left, -4, axis=1), cam.with_baseline(0.1))
    # SGBM matched everything at 5 px (as it may in a sky, carried in by its smoothness term)
    matched = ([np.full((48, 64), 5.0, np.float32)] * 2, [np.ones((48, 64), bool)] * 2, 0.0)
    monkeypatch.setattr(HybridStereoEstimator, "_run_sgbm", lambda self, inp: matched)
    kw = dict(runtime="torch", weights="random-init", max_disparity=16, near_pass=False)
    net = make_estimator("stereo", **kw).disparity(inp)[0]
    plain = make_estimator("stereo-hybrid", **kw).disparity(inp)[0]
    gated = make_estimator("stereo-hybrid", texture_min=4.0, **kw).disparity(inp)[0]
    assert np.all(plain == 5.0)
    window_px = 2 * 5 - 1  # twice SGBM's 5 px block at this width
    np.testing.assert_allclose(gated[:, :32 - window_px], net[:, :32 - window_px], rtol=1e-5, atol=1e-5)
    assert np.all(gated[:, 32 + window_px:] == 5.0)
    with pytest.raises(ValueError, match="texture_min"):
        make_estimator("stereo-hybrid", texture_min=-1.0, **kw)


def test_hybrid_arbitration_where_sgbm_passes_disagree():
    """Per pixel: passes that agree give their mean; where they conflict ``nearest`` takes the
    pass nearest the network, ``all`` the network (NaN here) and ``first`` the first pass."""
    from depth_nodes.depth.runtime import fuse_hybrid

    nan = np.nan
    # pixels: agree, conflict (pass 2 nearer the net), conflict (pass 1 nearer), only pass 2, none
    first = np.array([[10.0, 10.0, 10.0, nan, nan]], np.float32)
    second = np.array([[10.4, 14.0, 14.0, 7.0, nan]], np.float32)
    net = np.array([[12.0, 13.5, 10.5, 3.0, 5.0]], np.float32)
    disps = [np.nan_to_num(first, nan=-1.0), np.nan_to_num(second, nan=-1.0)]
    valids = [np.isfinite(first), np.isfinite(second)]
    np.testing.assert_allclose(fuse_hybrid(disps, valids, net, "nearest")[0], [[10.2, 14.0, 10.0, 7.0, nan]], rtol=1e-6)
    np.testing.assert_allclose(fuse_hybrid(disps, valids, net, "all")[0], [[10.2, nan, nan, nan, nan]], rtol=1e-6)
    np.testing.assert_allclose(fuse_hybrid(disps, valids, net, "first")[0], [[10.2, 10.0, 10.0, nan, nan]], rtol=1e-6)
    # with a limit, a conflicting pixel whose nearest pass is farther from the net goes to the net
    # (pixel 4: pass 2 is 4 px away); agreeing passes are kept whatever the net says (pixel 1)
    np.testing.assert_allclose(fuse_hybrid(disps, valids, net, "nearest", nearest_max_gap=1.0)[0],
                               [[10.2, 14.0, 10.0, nan, nan]], rtol=1e-6)
    np.testing.assert_allclose(fuse_hybrid(disps, valids, net, "nearest", nearest_max_gap=0.4)[0],
                               [[10.2, nan, nan, nan, nan]], rtol=1e-6)


def test_hybrid_default_arbitrates_with_the_network():
    """The default hybrid is SGBM's passes fused with ``nearest``; where it keeps no SGBM pass the
    network's disparity, and it keeps more SGBM pixels than ``all``."""
    from depth_nodes.depth.runtime import fuse_hybrid

    cam = PinholeCamera.from_fov(128, 96, 80.0)
    rng = np.random.default_rng(5)
    left = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    right = np.roll(left, -6, axis=1)
    right[30:60, 60:100] = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)  # no true match there
    inp = DepthInput(left, cam, None, right, cam.with_baseline(0.1))
    assert make_estimator("stereo-hybrid", weights="random-init").near_pass  # on by default, tested apart
    hybrid = make_estimator("stereo-hybrid", runtime="torch", weights="random-init", max_disparity=32,
                            near_pass=False, refine=False)
    assert hybrid.agreement == "nearest"
    disp, _ = hybrid.disparity(inp)
    net_disp, _ = make_estimator("stereo", runtime="torch", weights="random-init", max_disparity=32,
                                 near_pass=False).disparity(inp)
    disps, valids = hybrid.sgbm_for(128).pass_disparities(left, right)
    kept, _ = fuse_hybrid(disps, valids, net_disp, "nearest")
    np.testing.assert_allclose(disp, np.where(np.isfinite(kept), kept, net_disp), rtol=1e-5, atol=1e-5)
    assert np.isfinite(kept).sum() > np.isfinite(fuse_hybrid(disps, valids, net_disp, "all")[0]).sum()
    # nearest_max_gap is in px at the network's input size: scaled to the camera's (here 2x)
    limited = make_estimator("stereo-hybrid", runtime="torch", weights="random-init", max_disparity=32,
                             near_pass=False, net_size=(64, 48), nearest_max_gap=10.0)
    net_disp, _ = make_estimator("stereo", runtime="torch", weights="random-init", max_disparity=32,
                                 near_pass=False, net_size=(64, 48)).disparity(inp)
    disps, valids = limited.sgbm_for(128).pass_disparities(left, right)
    kept, _ = fuse_hybrid(disps, valids, net_disp, "nearest", nearest_max_gap=20.0)
    unscaled, _ = fuse_hybrid(disps, valids, net_disp, "nearest", nearest_max_gap=10.0)
    assert np.isfinite(kept).sum() != np.isfinite(unscaled).sum()  # so the scaling is what is tested
    np.testing.assert_allclose(limited.disparity(inp)[0], np.where(np.isfinite(kept), kept, net_disp),
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="nearest_max_gap"):
        make_estimator("stereo-hybrid", weights="random-init", nearest_max_gap=0.0)


def test_input_validation():
    cam = PinholeCamera.from_fov(64, 48, 80.0)
    img = np.zeros((48, 64, 3), np.uint8)
    with pytest.raises(ValueError, match="rgb shape"):
        DepthInput(np.zeros((40, 64, 3), np.uint8), cam)
    with pytest.raises(ValueError, match="uint8"):
        DepthInput(img.astype(np.float32), cam)
    with pytest.raises(ValueError, match="radar"):
        DepthInput(img, cam, radar=np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match="finite"):
        DepthInput(img, cam, radar=np.full((1, 5), np.nan, np.float32))
    with pytest.raises(ValueError, match="baseline"):
        DepthInput(img, cam, right_rgb=img, right_camera=cam)
    with pytest.raises(ValueError, match="right_rgb"):
        make_estimator("sgbm").estimate(DepthInput(img, cam))


def test_losses_vanish_for_perfect_prediction_and_grow_with_error():
    from depth_nodes.depth.losses import gradient_matching, silog

    g = torch.Generator().manual_seed(2)
    log_gt = torch.rand(2, 1, 16, 20, generator=g) * 3
    mask = (torch.rand(2, 1, 16, 20, generator=g) > 0.2).float()
    assert silog(log_gt, log_gt, mask) < 1e-3
    assert gradient_matching(log_gt, log_gt, mask) < 1e-6
    # a global scale error is (mostly) forgiven by silog, local noise is not
    assert silog(log_gt + 0.5, log_gt, mask) < 0.5 * 0.5
    noisy = log_gt + 0.3 * torch.randn(2, 1, 16, 20, generator=g)
    assert silog(noisy, log_gt, mask) > 0.2 and gradient_matching(noisy, log_gt, mask) > 0.1


@pytest.mark.parametrize("cin,cout", [(4, 6), (6, 1)])
def test_volume_conv_equals_conv3d(cin, cout):
    """Both ways of running it (stacked outputs: NCHW, and channels last where the layer has
    fewer outputs than inputs; stacked inputs: channels last otherwise) are Conv3d's maths."""
    from depth_nodes.depth.stereo_net import VolumeConv

    conv3d = torch.nn.Conv3d(cin, cout, 3, padding=1, bias=True)
    vc = VolumeConv(cin, cout, last=True)
    with torch.no_grad():
        vc.conv.weight.copy_(conv3d.weight.permute(0, 2, 1, 3, 4).reshape(cout, 3 * cin, 3, 3))
        vc.conv.bias.copy_(conv3d.bias)
        v = torch.randn(2, 5, cin, 7, 9, generator=torch.Generator().manual_seed(4))  # (B, D, C, H, W)
        ref = conv3d(v.permute(0, 2, 1, 3, 4)).permute(0, 2, 1, 3, 4)
        torch.testing.assert_close(vc(v), ref, rtol=1e-4, atol=1e-5)
        # the same volume channels last, (B, D, H, W, C), gives the same volume channels last
        out = vc(v.permute(0, 1, 3, 4, 2).contiguous(), channels_last=True)
        torch.testing.assert_close(out, ref.permute(0, 1, 3, 4, 2), rtol=1e-4, atol=1e-5)
    # counted as the Conv3d, though its convolution runs through torch.nn.functional
    assert count_macs(vc, v) == count_macs(conv3d, v.permute(0, 2, 1, 3, 4)) > 0


def test_volume_conv_normalises_after_adding_the_slices():
    """With BatchNorm + ReLU (training, and unfolded inference) in both layouts and both ways."""
    from depth_nodes.depth.stereo_net import VolumeConv

    g = torch.Generator().manual_seed(6)
    v = torch.randn(1, 6, 8, 5, 7, generator=g)
    for cout in (8, 2):  # stacked inputs channels last / stacked outputs everywhere
        vc = VolumeConv(8, cout).eval()
        vc.bn.running_mean.uniform_(-0.5, 0.5, generator=g)
        vc.bn.running_var.uniform_(0.5, 2.0, generator=g)
        with torch.no_grad():
            conv = vc.conv(torch.cat([torch.nn.functional.pad(v, (0, 0, 0, 0, 0, 0, 1, 1))[:, k:k + 6]
                                      for k in range(3)], dim=2).flatten(0, 1))
            ref = vc.act(vc.bn(conv)).unflatten(0, (1, 6))
            torch.testing.assert_close(vc(v), ref, rtol=1e-4, atol=1e-5)
            out = vc(v.permute(0, 1, 3, 4, 2).contiguous(), channels_last=True)
            torch.testing.assert_close(out, ref.permute(0, 1, 3, 4, 2), rtol=1e-4, atol=1e-5)
        assert (ref == 0).any() and (ref > 0).any()  # the ReLU acted


def test_stereo_net_gives_the_same_disparity_in_both_memory_layouts():
    from depth_nodes.depth.stereo_net import correlation_volume

    g = torch.Generator().manual_seed(5)
    fl, fr = torch.randn(2, 8, 6, 20, generator=g), torch.randn(2, 8, 6, 20, generator=g)
    torch.testing.assert_close(correlation_volume(fl, fr, 5, 2, channels_last=True),
                               correlation_volume(fl, fr, 5, 2).permute(0, 1, 3, 4, 2))
    torch.manual_seed(0)
    net = StereoNet(max_disparity=32).eval()
    for m in net.modules():  # BatchNorm statistics that are not the identity
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5, generator=g)
            m.running_var.uniform_(0.5, 2.0, generator=g)
    left, right = (torch.rand(2, 3, 48, 64, generator=g) * 255 for _ in range(2))
    with torch.no_grad():
        ref = net(left, right)
        cl = torch.channels_last
        out = net.to(memory_format=cl)(left.contiguous(memory_format=cl), right.contiguous(memory_format=cl))
    for a, b in zip(out, ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


_FAULTS_SCRIPT = """
import numpy as np
from depth_nodes.cliutil import minor_page_faults
from depth_nodes.depth.runtime import TorchBackend, memory_retained
from depth_nodes.depth.mono_radar_net import MonoRadarNet
TorchBackend(MonoRadarNet())  # a CPU torch runtime
def churn():  # what a forward pass does: large buffers allocated, written, then freed
    for _ in range(10):
        maps = [np.empty(1 << 21, np.float32) for _ in range(4)]
        for a in maps:
            a.fill(1.0)
        del maps, a
churn()
before = minor_page_faults()
churn()
print(memory_retained(), minor_page_faults() - before)
"""


@pytest.mark.skipif(sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_torch_cpu_runtime_keeps_freed_memory_unless_told_not_to():
    def run(env):
        out = subprocess.run([sys.executable, "-c", _FAULTS_SCRIPT], env={**os.environ, **env}, check=True,
                             capture_output=True, text=True).stdout.split()
        return out[0] == "True", int(out[1])

    retained, faults = run({})
    assert retained and faults < 100  # 10 x 32 MiB served from the heap
    retained, faults = run({"DEPTH_NODES_RETAIN_FREED_MEMORY": "0"})
    assert not retained and faults > 10 * 1000  # some given back and mapped afresh every time


def _mono_estimator(card, net_size=None):
    from depth_nodes.depth.runtime import MonoRadarEstimator

    torch.manual_seed(0)
    return MonoRadarEstimator(MonoRadarNet(), runtime="torch", net_size=net_size, card=card)


def test_focal_normalized_mono_resamples_each_camera_to_the_trained_focal(caplog):
    card = {"input_size": [160, 120], "input_focal_px": [80.0, 80.0], "focal_normalized": True}
    est = _mono_estimator(card)
    # the training rig (90 deg): the card's input size, as before
    assert est.net_camera(PinholeCamera.from_fov(320, 240, 90.0)).size == (160, 120)
    # a narrower 16:9 camera: fewer pixels at the same focal, aspect kept
    narrow = PinholeCamera.from_fov(640, 360, 70.0)
    net = est.net_camera(narrow)
    assert net.fx == pytest.approx(80.0, rel=0.01) and net.fy == pytest.approx(80.0, rel=0.02)
    assert net.size == (round(640 * 80 / narrow.fx), round(360 * 80 / narrow.fy))
    assert net.width < 160 and net.width / net.height == pytest.approx(16 / 9, rel=0.02)
    out = est.estimate(DepthInput(np.zeros((360, 640, 3), np.uint8), narrow))
    assert out.depth.shape == (360, 640) and np.isfinite(out.depth).all()
    # a very wide camera would need more than 4x the trained input: shrunk, with a warning
    with caplog.at_level("WARNING", logger="depth_nodes.depth.runtime"):
        wide = est.net_camera(PinholeCamera.from_fov(1280, 960, 150.0))
    assert wide.width * wide.height <= 4 * 160 * 120 * 1.01 and "shrunk" in caplog.text
    # an explicit net_size wins over the card
    assert _mono_estimator(card, net_size=(96, 64)).net_camera(narrow).size == (96, 64)


def test_mono_not_focal_normalized_warns_once_about_another_field_of_view(caplog):
    card = {"input_size": [160, 120], "input_focal_px": [80.0, 80.0], "focal_normalized": False}
    est = _mono_estimator(card)
    with caplog.at_level("WARNING", logger="depth_nodes.depth.runtime"):
        assert est.net_camera(PinholeCamera.from_fov(640, 480, 92.0)).size == (160, 120)
        assert "field of view" not in caplog.text  # within 5 % of the trained 90 deg
        narrow = PinholeCamera.from_fov(640, 480, 69.0)
        for _ in range(3):
            assert est.net_camera(narrow).size == (160, 120)
    assert caplog.text.count("field of view 69 deg") == 1
    # an old card without the focal: resized as before, no check possible
    assert _mono_estimator({"input_size": [160, 120]}).net_camera(narrow).size == (160, 120)


def _textured_plane_pair(disparity: int, w: int = 320, h: int = 240):
    """A rectified pair of a fronto-parallel plane with a smooth random texture at ``disparity`` px."""
    from helpers_stereo import textured_plane

    left, right = textured_plane(np.random.default_rng(0), disparity, w, h)
    cam = PinholeCamera.from_fov(w, h, 90.0)
    return DepthInput(left, cam, None, right, cam.with_baseline(0.1))


@pytest.mark.parametrize("mode", ["stereo", "stereo-hybrid"])
def test_near_pass_sees_a_surface_beyond_the_search_range(mode):
    """A plane at 80 px disparity lies beyond the packaged network's 64 px range: the full-resolution
    pass reads it far; the half-resolution near pass measures it (the hybrid too, whose SGBM
    searches the same 64 px)."""
    inp = _textured_plane_pair(80)
    centre = (slice(40, 200), slice(100, 300))
    with_near, _ = make_estimator(mode, runtime="torch").disparity(inp)
    without, _ = make_estimator(mode, runtime="torch", near_pass=False).disparity(inp)
    assert np.mean(np.abs(with_near[centre] - 80) < 2) > 0.95
    assert np.nanmedian(without[centre]) < 40  # what the near pass fixes: a near plane read as far
    plane = _textured_plane_pair(40)  # within the range both agree
    np.testing.assert_allclose(make_estimator(mode, runtime="torch").disparity(plane)[0],
                               make_estimator(mode, runtime="torch", near_pass=False).disparity(plane)[0])


class _BandNet(torch.nn.Module):
    """Stand-in stereo network: disparity (px at its input) = red / 10 at full input width, green / 10
    at any smaller width; confidence 0.25 at full width, 0.75 below."""

    max_disparity = 32

    def __init__(self, full_width: int):
        super().__init__()
        self.full_width = full_width

    def forward(self, left, right):
        full = left.shape[-1] == self.full_width
        disp = left[:, :1] / 10.0 if full else left[:, 1:2] / 10.0
        return disp, torch.full_like(disp, 0.25 if full else 0.75)


def test_near_pass_rule_threshold_and_margin():
    """The near pass's disparity replaces the network's where it exceeds 3/4 of the full-resolution
    range (24 px of 32) and the full-resolution disparity by more than 2 px; nowhere else."""
    from depth_nodes.depth.runtime import StereoEstimator

    w, h = 80, 48  # half the width (40 px) must exceed the 32 px range for the near pass to run
    left = np.zeros((h, w, 3), np.uint8)
    #            band:  far-half below the range | near | near but within the margin of full
    for x0, red, green in ((0, 100, 100), (16, 100, 150), (32, 250, 130)):
        left[:, x0:x0 + 16] = (red, green, 0)
    cam = PinholeCamera.from_fov(w, h, 80.0)
    inp = DepthInput(left, cam, None, left.copy(), cam.with_baseline(0.1))
    est = StereoEstimator(_BandNet(w), runtime="torch", net_size=(w, h))
    disp, conf, near = est.network_disparity(inp)
    inner = slice(4, 12)  # away from the bilinear band edges
    bands = [np.s_[:, x0:x0 + 16][1] for x0 in (0, 16, 32)]
    got = [float(np.median(disp[:, b][:, inner])) for b in bands]
    np.testing.assert_allclose(got, [10.0, 30.0, 25.0], atol=1e-3)  # half-res 20 < 24; 30; 26 - 25 <= 2
    assert near[:, bands[1]][:, inner].all() and not near[:, bands[0]].any() and not near[:, bands[2]][:, inner].any()
    np.testing.assert_allclose(conf[:, bands[1]][:, inner], 0.75)
    off = StereoEstimator(_BandNet(w), runtime="torch", net_size=(w, h), near_pass=False)
    disp_off, _, near_off = off.network_disparity(inp)
    assert not near_off.any() and float(np.median(disp_off[:, bands[1]][:, inner])) == pytest.approx(10.0)
    narrow = DepthInput(left[:, :64].copy(), cam.cropped(0, 0, 64, h), None, left[:, :64].copy(),
                        cam.cropped(0, 0, 64, h).with_baseline(0.1))
    assert not StereoEstimator(_BandNet(64), runtime="torch", net_size=(64, h)).network_disparity(narrow)[2].any()


def test_hybrid_gives_way_to_the_near_pass_only_where_sgbm_passes_disagree():
    from depth_nodes.depth.runtime import fuse_hybrid

    # pixels: passes agree (kept though the near pass differs), conflict far from the near disparity
    # (network), conflict with a pass within 2 px of it (that pass), conflict without near (nearest)
    first = np.array([[10.0, 10.0, 30.0, 10.0]], np.float32)
    second = np.array([[10.4, 14.0, 20.0, 14.0]], np.float32)
    net = np.array([[40.0, 40.0, 31.0, 13.0]], np.float32)
    near = np.array([[True, True, True, False]])
    valids = [np.ones_like(near), np.ones_like(near)]
    out, agree = fuse_hybrid([first, second], valids, net, "nearest", near)
    np.testing.assert_array_equal(agree, [[True, False, False, False]])
    np.testing.assert_allclose(out, [[10.2, np.nan, 30.0, 14.0]], rtol=1e-6)
    np.testing.assert_allclose(fuse_hybrid([first, second], valids, net, "first", near)[0],
                               [[10.2, np.nan, 30.0, 10.0]], rtol=1e-6)
