"""The stereo hybrid's learned refiner: network, loss, estimator wiring, training data and CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from depth_nodes.camera import PinholeCamera
from depth_nodes.cli import main
from depth_nodes.depth.interface import DepthInput, make_estimator
from depth_nodes.depth.metrics import DepthMetrics
from depth_nodes.depth.model_io import WeightsNotFoundError, default_weights, save_weights
from depth_nodes.depth.refine_net import DisparityRefiner, source_channels
from depth_nodes.depth.stereo_net import StereoNet


def _pair(w=96, h=64, shift=5, seed=0):
    rng = np.random.default_rng(seed)
    left = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    cam = PinholeCamera.from_fov(w, h, 80.0)
    return DepthInput(left, cam, None, np.roll(left, -shift, axis=1), cam.with_baseline(0.1))


def test_source_channels_mark_agreeing_and_other_sgbm_pixels():
    agree = np.array([[True, False, False]])
    sgbm = np.array([[True, True, False]])
    np.testing.assert_array_equal(source_channels(agree, sgbm).numpy(), [[[[1, 0, 0]], [[0, 1, 0]]]])


def test_refiner_adds_its_residual_only_where_the_input_has_a_depth():
    """A residual of +5 px everywhere moves every disparity of at least MIN_DISPARITY_PX (0.25) by
    5 and leaves the smaller ones (no depth: too far, or sky) as they are; any image size."""
    net = DisparityRefiner(features=8, dilations=(1, 2)).eval()
    with torch.no_grad():
        net.out.weight.zero_()
        net.out.bias.fill_(5.0)
    for h, w in ((37, 53), (64, 96)):
        img = torch.rand(1, 3, h, w) * 255
        disp = torch.rand(1, 1, h, w) * 20 - 2
        with torch.no_grad():
            (out,) = net(img, img, disp, torch.zeros(1, 2, h, w))
        assert out.shape == (1, 1, h, w)
        np.testing.assert_allclose(out.numpy(), torch.where(disp >= 0.25, disp + 5.0, disp).numpy(), atol=1e-5)
    assert net.config == {"features": 8, "dilations": [1, 2]}
    with pytest.raises(ValueError, match="dilations"):
        DisparityRefiner(dilations=())


def test_global_photometric_change_maps_both_images_by_one_curve():
    """The refiner's augmentation: equal pixels stay equal across the pair and within an image
    (no per-image brightness, blur or noise); the full augmentation breaks that."""
    from depth_nodes.depth.data import photometric

    img = np.random.default_rng(2).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    img[:, 16:] = img[:, :16]
    for seed in range(5):
        left, right = photometric(np.random.default_rng(seed), img, img.copy(), global_only=True)
        np.testing.assert_array_equal(left, right)
        np.testing.assert_array_equal(left[:, 16:], left[:, :16])
    assert any(not np.array_equal(*photometric(np.random.default_rng(seed), img, img.copy())) for seed in range(5))


def test_refine_loss_is_the_depth_abs_rel():
    """|pred - gt| / pred in disparity is the depth's abs_rel over the same pixels."""
    from depth_nodes.depth.losses import refine_loss

    rng = np.random.default_rng(1)
    gt = rng.uniform(0.1, 30.0, (1, 1, 8, 8)).astype(np.float32)
    valid = (rng.random((1, 1, 8, 8)) > 0.2).astype(np.float32)
    pred = (gt * rng.uniform(0.7, 1.4, gt.shape)).astype(np.float32)
    hybrid = (gt * 1.5).astype(np.float32)

    class Fixed(torch.nn.Module):
        def forward(self, left, right, disparity, source):
            return (torch.from_numpy(pred),)

    batch = {"image": torch.zeros(1, 3, 8, 8), "right": torch.zeros(1, 3, 8, 8), "source": torch.zeros(1, 2, 8, 8),
             "hybrid": torch.from_numpy(hybrid), "disparity": torch.from_numpy(gt * valid),
             "valid": torch.from_numpy(valid)}
    loss, parts = refine_loss(Fixed(), batch)
    metrics = DepthMetrics()
    fb = 4.0  # any fx * baseline
    keep = (valid > 0) & (gt >= 0.25)
    metrics.add(np.where(keep, fb / pred, np.nan)[0, 0], np.where(keep, fb / gt, np.nan)[0, 0])
    assert loss.item() == pytest.approx(metrics.result()["abs_rel"], rel=1e-5)
    assert parts["input"] == pytest.approx(1.0 / 3.0, rel=1e-5)  # |1.5 g - g| / 1.5 g


def test_hybrid_refines_its_fused_disparity_with_the_packaged_refiner():
    inp = _pair()
    hybrid = make_estimator("stereo-hybrid", runtime="torch", weights="random-init", max_disparity=16, refine=True)
    assert hybrid.refiner is not None and hybrid.refine_card["model"] == "stereo_refine"
    fused, conf, source = hybrid.fused_disparity(inp)
    assert source.shape == (1, 2, 64, 96) and source[0, 0].mean() > 0.3  # most pixels: SGBM's passes agree
    disp, conf_refined = hybrid.disparity(inp)
    with torch.no_grad():
        (expected,) = hybrid.refiner.inference_model(
            torch.from_numpy(inp.rgb.transpose(2, 0, 1)[None].astype(np.float32)),
            torch.from_numpy(inp.right_rgb.transpose(2, 0, 1)[None].astype(np.float32)),
            torch.from_numpy(fused[None, None]), torch.from_numpy(source))
    np.testing.assert_allclose(disp, expected[0, 0].numpy(), rtol=1e-4, atol=1e-4)
    assert not np.allclose(disp, fused)  # the refiner did something
    np.testing.assert_array_equal(conf_refined, conf)
    assert "refine" in hybrid.estimate(inp).timings
    plain = make_estimator("stereo-hybrid", runtime="torch", weights="random-init", max_disparity=16)
    assert plain.refiner is None  # off by default (see README: it flew worse)
    np.testing.assert_array_equal(plain.disparity(inp)[0], fused)
    onnx = make_estimator("stereo-hybrid", runtime="onnx", weights="random-init", max_disparity=16, refine=True)
    np.testing.assert_allclose(onnx.disparity(inp)[0], disp, rtol=1e-3, atol=2e-3)
    packaged = default_weights("stereo_refine")
    assert make_estimator("stereo-hybrid", weights="random-init", refine_weights=packaged).refiner is not None
    with pytest.raises(WeightsNotFoundError, match="nothing.safetensors"):
        make_estimator("stereo-hybrid", weights="random-init", refine=True,
                       refine_weights="/nonexistent/nothing.safetensors")
    with pytest.raises(ValueError, match="refine"):
        make_estimator("stereo", weights="random-init", refine=False)


@pytest.fixture(scope="module")
def refine_setup(tmp_path_factory):
    """A fake dataset of worlds 3, 7, 9 and stereo weights whose card says they saw world 3."""
    from test_depth_train import write_fake_dataset

    root = tmp_path_factory.mktemp("refine")
    data = write_fake_dataset(root / "data", seeds=(3, 7, 9))
    torch.manual_seed(0)
    stereo = save_weights(StereoNet(max_disparity=16).eval(), root / "stereo.safetensors",
                          {"model": "stereo", "data": {"train_world_seeds": [3]}})
    return data, stereo


def test_refine_dataset_leaves_out_the_stereo_networks_worlds_and_caches(refine_setup, tmp_path):
    from depth_nodes.depth.refine_data import RefineDataset

    data, stereo = refine_setup
    train = RefineDataset(data, "train", tmp_path / "cache", stereo_weights=stereo, augment=True, runtime="torch")
    assert train.excluded_seeds == [3] and train.train_seeds == [7] and train.val_seeds == [9]
    assert {f["world"]["seed"] for f in train.base.frames} == {7}
    item = train[0]
    # frames (64x48) smaller than the training crop are taken whole
    assert item["image"].shape == (3, 48, 64) and item["source"].shape == (2, 48, 64)
    assert item["hybrid"].shape == item["disparity"].shape == item["valid"].shape == (1, 48, 64)
    assert item["valid"][0, :3].sum() == 0 and item["valid"][0, 3:].all()  # no GT in the fake sky
    cached = sorted(train.cache.glob("*.npz"))
    assert len(cached) == 2 and train.cache.name.startswith("hybrid-")
    stamp = [p.stat().st_mtime_ns for p in cached]
    again = RefineDataset(data, "train", tmp_path / "cache", stereo_weights=stereo, crop=(32, 24), runtime="torch")
    assert [p.stat().st_mtime_ns for p in cached] == stamp  # read back, not computed again
    crop = again[1]
    assert crop["image"].shape == (3, 24, 32) and crop["hybrid"].shape == (1, 24, 32)
    whole = RefineDataset(data, "train", tmp_path / "cache", stereo_weights=stereo, crop=None, runtime="torch")[1]
    np.testing.assert_array_equal(whole["hybrid"][0, 3:], np.load(cached[1])["hybrid"][3:])
    all_seen = save_weights(StereoNet(max_disparity=16).eval(), tmp_path / "seen.safetensors",
                            {"model": "stereo", "data": {"train_world_seeds": [3, 7, 9]}})
    with pytest.raises(ValueError, match="every world seed"):
        RefineDataset(data, "train", tmp_path / "cache", stereo_weights=all_seen, runtime="torch")


def test_train_refine_two_steps_then_eval(refine_setup, tmp_path, capsys, caplog):
    data, stereo = refine_setup
    out = tmp_path / "run"
    args = ["train", "refine", "--data", str(data), "--minutes", "5", "--out", str(out), "--batch", "2",
            "--steps", "2", "--stereo-weights", str(stereo), "--json"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 2
    card = json.loads((out / "stereo_refine.json").read_text())
    assert card["architecture"]["class"] == "DisparityRefiner" and card["model"] == "stereo_refine"
    assert card["excluded_world_seeds"] == [3] and card["stereo_weights"] == str(stereo)
    assert card["data"]["train_world_seeds"] == [7] and card["data"]["val_world_seeds"] == [9]
    assert "--stereo-weights" in card["training"]["command"] and card["gmac_320x240"] > 0
    assert card["metrics_val"]["abs_rel"] >= 0 and card["metrics_val"]["input"]["abs_rel"] >= 0
    common = ["eval", "depth", "--data", str(data), "--weights", str(stereo), "--split", "all", "--json"]
    assert main([*common, "--mode", "stereo-hybrid", "--refine-weights", str(out / "stereo_refine.safetensors")]) == 0
    assert json.loads(capsys.readouterr().out)["refine"] is True
    assert main([*common, "--mode", "stereo-hybrid"]) == 0
    assert json.loads(capsys.readouterr().out)["refine"] is False
    assert main([*common, "--mode", "stereo", "--refine"]) == 2
    assert "stereo-hybrid only" in caplog.text
    assert main(["train", "refine", "--data", str(data), "--minutes", "1", "--out", str(out), "--size", "32x24"]) == 2
    from depth_nodes.depth.train import TrainConfig

    with pytest.raises(ValueError, match="stereo_weights is for task 'refine'"):
        TrainConfig("stereo", str(data), 1.0, stereo_weights=str(stereo)).validate()
