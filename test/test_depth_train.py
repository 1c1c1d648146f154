"""Dataset loading, short training runs with checkpoint/resume, and eval/bench commands on fake data."""
from __future__ import annotations

import json

import numpy as np
import pytest

from depth_nodes.cli import main
from depth_nodes.depth.data import DepthDataset, read_manifest, split_seeds
from depth_nodes.depth.evaluate import bench_models

W, H, BASELINE = 64, 48, 0.1
K = [50.0, 0.0, 31.5, 0.0, 50.0, 23.5, 0.0, 0.0, 1.0]


def write_fake_dataset(root, seeds=(3, 7), frames_per_world=2, rng_seed=0):
    """A tiny dataset in the `depth-nodes sim dataset` format: a textured slanted wall per frame."""
    rng = np.random.default_rng(rng_seed)
    (root / "frames").mkdir(parents=True)
    frames = []
    u = np.arange(W)
    for wi, seed in enumerate(seeds):
        for f in range(frames_per_world):
            depth = np.tile(np.linspace(2.0, 6.0, H, dtype=np.float32)[:, None], (1, W)) * (1 + 0.2 * f)
            depth[:3] = np.nan  # sky
            tex = rng.integers(0, 256, (H, W + 40, 3), dtype=np.uint8)
            left = tex[:, :W].copy()
            disp = np.nan_to_num(50.0 * BASELINE / depth, nan=0.0)
            cols = np.clip(np.rint(u[None, :] - disp).astype(int), 0, W - 1)
            right = np.zeros_like(left)
            right[np.arange(H)[:, None], cols] = left  # forward-warp: left(x) = right(x - d)
            vv, uu = rng.integers(5, H, 12), rng.integers(0, W, 12)
            z = depth[vv, uu]
            radar = np.column_stack([(uu - 31.5) * z / 50.0, (vv - 23.5) * z / 50.0, z,
                                     np.zeros(12), np.ones(12)]).astype(np.float32)
            name = f"frames/{wi:03d}_{f:04d}.npz"
            np.savez(root / name, rgb=left, right=right, depth=depth, radar=radar,
                     K=np.asarray(K).reshape(3, 3), baseline=np.float64(BASELINE), T_world_cam=np.eye(4))
            frames.append({"file": name, "world": {"kind": "forest", "seed": seed}, "frame": f})
    manifest = {"version": 1, "frames": frames, "camera": {"width": W, "height": H, "K": K, "baseline": BASELINE}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_fake_dataset(tmp_path_factory.mktemp("ds") / "data")


def test_split_holds_out_worlds():
    assert split_seeds([5, 1, 5, 9, 3], 0.2) == ([1, 3, 5], [9])
    assert split_seeds([4, 4], 0.2) == ([4], [])
    with pytest.raises(ValueError, match="val_fraction"):
        split_seeds([1, 2], 1.0)


def test_dataset_items_and_augmentation(dataset):
    train = DepthDataset(dataset, "train", augment=True, seed=1)
    val = DepthDataset(dataset, "val")
    assert len(train) == 2 and len(val) == 2
    assert {f["world"]["seed"] for f in val.frames} == {7}
    item = val[0]
    assert item["image"].shape == (3, H, W) and item["radar"].shape == (2, H, W)
    assert item["depth"].shape == item["valid"].shape == item["disparity"].shape == (1, H, W)
    assert item["valid"][0, :3].sum() == 0 and item["valid"][0, 3:].all()
    # disparity GT = fx * B / depth
    np.testing.assert_allclose(item["disparity"][0, 10], 50.0 * BASELINE / item["depth"][0, 10], rtol=1e-5)
    assert item["radar"][1].sum() > 0
    small = DepthDataset(dataset, "all", size=(32, 24))[0]
    assert small["image"].shape == (3, 24, 32) and small["disparity"][0, 20].max() < item["disparity"].max()
    aug = [train[0]["image"] for _ in range(3)]
    assert not np.array_equal(aug[0], aug[1])


def test_bad_dataset_is_rejected(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"version": 2, "frames": []}))
    with pytest.raises(ValueError, match="version"):
        read_manifest(tmp_path)


@pytest.mark.parametrize("task", ["mono", pytest.param("stereo", marks=pytest.mark.slow)])
def test_train_two_steps_then_resume(dataset, tmp_path, task, capsys):
    out = tmp_path / "run"
    common = ["train", task, "--data", str(dataset), "--minutes", "5", "--out", str(out), "--batch", "2",
              "--seed", "0", "--max-disparity", "16", "--json"]
    assert main([*common, "--steps", "2"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["steps"] == 2
    ckpt = json.loads((out / "checkpoint.json").read_text())
    assert ckpt["step"] == 2 and (out / "checkpoint_optim.safetensors").is_file()
    name = "mono_radar" if task == "mono" else "stereo"
    card = json.loads((out / f"{name}.json").read_text())
    assert card["training"]["steps"] == 2 and "--steps 2" in card["training"]["command"]
    assert card["data"]["val_world_seeds"] == [7] and card["params"] > 0 and card["gmac_320x240"] > 0
    assert "abs_rel" in card["metrics_val"]

    assert main([*common, "--steps", "3", "--resume", str(out / "checkpoint.json")]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["steps"] == 3
    assert json.loads((out / "checkpoint.json").read_text())["step"] == 3

    mode = "mono-radar" if task == "mono" else "stereo"
    assert main(["eval", "depth", "--data", str(dataset), "--mode", mode, "--weights",
                 str(out / f"{name}.safetensors"), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["weights"] == "trained" and res["n_frames"] == 2 and res["world_seeds"] == [7]
    assert 0.0 <= res["delta1"] <= 1.0 and set(res["bins"]) == {"0-5", "5-10", "10-20", "20+"}


def test_eval_depth_sgbm(dataset, capsys):
    assert main(["eval", "depth", "--data", str(dataset), "--mode", "sgbm", "--split", "all", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["mode"] == "sgbm" and res["n_frames"] == 4 and res["n_pixels_gt"] == 4 * (H - 3) * W
    assert res["density"] > 0.3 and res["abs_rel"] < 0.3
    assert res["crop"] is None
    # the centred 3/4 window: a narrower view at the same focal, evaluated on its own pixels
    assert main(["eval", "depth", "--data", str(dataset), "--mode", "sgbm", "--split", "all", "--crop", "0.75",
                 "--json"]) == 0
    crop = json.loads(capsys.readouterr().out)
    assert crop["crop"] == 0.75 and crop["hfov_deg"] < res["hfov_deg"] - 5
    assert 0.4 * res["n_pixels_gt"] < crop["n_pixels_gt"] < 0.7 * res["n_pixels_gt"]
    assert main(["eval", "depth", "--data", str(dataset), "--mode", "sgbm", "--split", "all", "--crop", "1.5",
                 "--json"]) == 2
    assert capsys.readouterr().out == ""


def test_eval_depth_max_disparity_sets_the_search_range(dataset, capsys, caplog):
    # the fake walls are 2-7.2 m away: 0.7-2.5 px of disparity at fx * baseline = 5 px m
    args = ["eval", "depth", "--data", str(dataset), "--split", "all", "--json"]
    assert main([*args, "--mode", "sgbm", "--max-disparity", "32"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["max_disparity"] == 32 and res["density"] > 0.3
    assert main([*args, "--mode", "sgbm", "--max-disparity", "30"]) == 2  # SGBM needs a multiple of 16
    assert main([*args, "--mode", "mono-radar", "--max-disparity", "32"]) == 2
    assert "stereo modes only" in caplog.text
    capsys.readouterr()
    runs = {}
    for passes, agreement in (("1", "first"), ("2", "first"), ("2", "all")):
        assert main([*args, "--mode", "sgbm", "--sgbm-passes", passes, "--sgbm-agreement", agreement]) == 0
        runs[passes, agreement] = json.loads(capsys.readouterr().out)
    # with validity from the first pass the extra pass changes disparities, not which pixels
    # matched (only a disparity averaged down to below the smallest usable one can turn a depth
    # invalid); requiring all passes to agree keeps fewer
    one, first, agreed = runs["1", "first"], runs["2", "first"], runs["2", "all"]
    assert one["sgbm_passes"] == 1 and agreed["sgbm_agreement"] == "all"
    assert one["density"] == pytest.approx(first["density"], abs=0.01)
    assert one["disparity_epe_px"] != first["disparity_epe_px"]
    assert agreed["density"] < first["density"]
    assert main([*args, "--mode", "stereo", "--sgbm-passes", "1"]) == 2
    assert main([*args, "--mode", "stereo", "--sgbm-agreement", "all"]) == 2
    assert main([*args, "--mode", "sgbm", "--sgbm-agreement", "nearest"]) == 2  # needs the network
    assert "stereo-hybrid only" in caplog.text
    assert main([*args, "--mode", "mono-radar", "--no-near-pass"]) == 2  # no stereo, no near pass
    assert "--no-near-pass applies to the stereo modes only" in caplog.text
    assert main([*args, "--mode", "stereo", "--nearest-max-gap", "4"]) == 2
    assert "--nearest-max-gap applies to stereo-hybrid only" in caplog.text
    assert main([*args, "--mode", "stereo-hybrid", "--nearest-max-gap", "0"]) == 2  # must be > 0
    capsys.readouterr()
    assert main([*args, "--mode", "stereo", "--max-frames", "2", "--no-near-pass"]) == 0
    assert json.loads(capsys.readouterr().out)["near_pass"] is False


def test_eval_depth_missing_weights_is_clear(dataset, capsys):
    assert main(["eval", "depth", "--data", str(dataset), "--mode", "stereo",
                 "--weights", "/nonexistent/stereo.safetensors", "--json"]) == 2
    assert capsys.readouterr().out == ""


def test_bench_models_small():
    res = bench_models(runtimes=("torch", "onnx"), sizes=((64, 48),), repeat=2)
    for key in ("mono_radar_64x48_ms", "mono_radar_onnx_64x48_ms", "stereo_64x48_ms", "stereo_onnx_64x48_ms",
                "sgbm_64x48_ms", "mono_radar_gmac_64x48", "stereo_params"):
        assert res[key] > 0, key
    assert res["weights"] == "random-init"
    assert "stereo_near_pass_gmac_64x48" not in res  # 32 px of width cannot hold the 64 px search
    assert res["stereo_hybrid_refined_64x48_ms"] > 0 and res["stereo_refine_gmac_64x48"] > 0
    assert res["mono_radar_64x48_page_faults"] >= 0 and isinstance(res["freed_memory_retained"], bool)
    assert res["torch_frozen"] is True  # the CPU default
    res = bench_models(runtimes=("torch",), sizes=((192, 96),), repeat=1)
    assert res["stereo_near_pass_gmac_192x96"] == pytest.approx(res["stereo_gmac_192x96"] / 4, rel=0.1)


def test_bench_models_packaged_reports_each_network_at_its_input_size():
    res = bench_models(runtimes=("torch",), sizes=((320, 240),), repeat=1, weights=None, warmup=0)
    assert res["weights"] == "packaged" and res["mono_radar_320x240_ms"] > 0
    # the packaged mono+radar network runs at its card's 160x120, a quarter of the pixels
    assert res["mono_radar_input_size_320x240"] == [160, 120]
    import torch

    from depth_nodes.depth.flops import count_macs
    from depth_nodes.depth.model_io import card_config, default_weights
    from depth_nodes.depth.mono_radar_net import MonoRadarNet

    packaged = MonoRadarNet(**card_config(default_weights("mono_radar")))  # the packaged architecture
    full = count_macs(packaged, torch.zeros(1, 3, 240, 320), torch.zeros(1, 2, 240, 320)) / 1e9
    assert res["mono_radar_gmac_320x240"] == pytest.approx(full / 4, rel=0.02)
    assert "stereo_input_size_320x240" not in res  # the stereo network runs at the camera's size


def test_export_onnx_cli(tmp_path):
    import onnx

    out = tmp_path / "m.onnx"
    assert main(["export", "onnx", "--model", "mono-radar", "--weights", "random-init", "--size", "64x48",
                 "--out", str(out)]) == 0
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["image", "radar"]


def test_export_onnx_cli_stereo_graph_is_static_and_folded(tmp_path):
    """No run-time shape tests (If) and no BatchNorm left: what the onnx runtime runs."""
    import onnx

    out = tmp_path / "s.onnx"
    assert main(["export", "onnx", "--model", "stereo", "--weights", "random-init", "--size", "128x64",
                 "--out", str(out)]) == 0
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert "Conv" in ops and not ops & {"If", "Loop", "BatchNormalization"}


def test_stereo_loss_trains_no_return_pixels_toward_zero_disparity():
    """--no-return-far: pixels without GT (a simulated sky) join the loss with target disparity 0."""
    import torch

    from depth_nodes.depth.losses import stereo_loss

    class Fixed(torch.nn.Module):
        max_disparity = 64

        def __init__(self, disparity: float):
            super().__init__()
            self.d = disparity

        def coarse_and_refined(self, left, right):
            d = torch.full((1, 1, 4, 4), self.d)
            return d, d, torch.zeros_like(d)

    valid = torch.zeros(1, 1, 4, 4)
    valid[..., :2, :] = 1.0  # upper half has GT, lower half saw nothing
    batch = {"image": torch.zeros(1, 3, 4, 4), "right": torch.zeros(1, 3, 4, 4),
             "disparity": torch.where(valid > 0, torch.tensor(5.0), torch.tensor(0.0)), "valid": valid}
    right, _ = stereo_loss(Fixed(5.0), batch)
    assert right.item() == pytest.approx(0.1 * torch.nn.functional.softplus(torch.tensor(0.0)).item())
    ignored, _ = stereo_loss(Fixed(5.0), batch, no_return_far=False)
    assert ignored.item() == pytest.approx(right.item())  # the sky is not looked at
    far, parts = stereo_loss(Fixed(5.0), batch, no_return_far=True)
    assert parts["refined"] == pytest.approx(0.5 * 4.5)  # half the pixels off by 5 px (smooth-L1 5 - 0.5)
    assert far.item() > right.item()
    zero_sky, parts = stereo_loss(Fixed(0.0), batch, no_return_far=True)
    assert parts["refined"] == pytest.approx(0.5 * 4.5)  # now the GT half is the wrong one


def test_mono_far_hinge_only_penalises_sky_predicted_near():
    import math

    import torch

    from depth_nodes.depth.losses import FAR_M, far_hinge

    sky = torch.tensor([[[[1.0, 1.0, 0.0]]]])
    log_pred = torch.log(torch.tensor([[[[FAR_M / math.e, 2 * FAR_M, 1.0]]]]))
    # the first sky pixel is one log unit short, the second far enough, the third is not sky
    assert far_hinge(log_pred, sky).item() == pytest.approx(0.5)
    assert far_hinge(log_pred, torch.zeros_like(sky)).item() == 0.0


def test_relative_error_is_abs_rel_over_valid_pixels():
    import math

    import torch

    from depth_nodes.depth.losses import REL_CLIP_LOG, relative_error

    gt = torch.tensor([[[[2.0, 10.0, 4.0, 1.0]]]])
    pred = torch.tensor([[[[3.0, 8.0, 4.0, 100.0]]]])
    valid = torch.tensor([[[[1.0, 1.0, 1.0, 0.0]]]])
    # (0.5 + 0.2 + 0) / 3; the invalid last pixel counts for nothing
    assert relative_error(torch.log(pred), torch.log(gt), valid).item() == pytest.approx(0.7 / 3, rel=1e-5)
    # a huge overestimate is capped at e**REL_CLIP_LOG - 1 and adds no gradient beyond it
    log_pred = torch.log(pred).requires_grad_(True)
    loss = relative_error(log_pred, torch.log(gt), torch.ones_like(gt))
    assert loss.item() == pytest.approx((0.7 + math.exp(REL_CLIP_LOG) - 1) / 4, rel=1e-5)
    loss.backward()
    grad = log_pred.grad.flatten().tolist()
    assert grad[3] == 0.0 and grad[0] > 0 > grad[1]


def test_rel_weight_changes_the_mono_loss_and_is_recorded(dataset, tmp_path, capsys):
    import torch

    from depth_nodes.depth.data import DepthDataset
    from depth_nodes.depth.losses import mono_loss
    from depth_nodes.depth.model_io import build_model

    torch.manual_seed(0)
    model = build_model("MonoRadarNet", {})
    item = DepthDataset(dataset, "all", size=(64, 48))[0]
    batch = {k: torch.as_tensor(v)[None] for k, v in item.items()}
    plain, parts = mono_loss(model, batch)
    with_rel, parts_rel = mono_loss(model, batch, rel_weight=0.5)
    assert "rel" not in parts and parts_rel["rel"] > 0
    assert with_rel.item() == pytest.approx(plain.item() + 0.5 * parts_rel["rel"], rel=1e-4)

    out = tmp_path / "run"
    assert main(["train", "mono", "--data", str(dataset), "--minutes", "5", "--out", str(out), "--batch", "2",
                 "--steps", "1", "--rel-weight", "0.5", "--json"]) == 0
    capsys.readouterr()
    card = json.loads((out / "mono_radar.json").read_text())
    assert "--rel-weight 0.5" in card["training"]["command"] and card["training"]["config"]["rel_weight"] == 0.5
    with pytest.raises(SystemExit):  # a stereo option it does not have
        main(["train", "stereo", "--data", str(dataset), "--minutes", "1", "--rel-weight", "0.5"])
    from depth_nodes.depth.train import TrainConfig

    with pytest.raises(ValueError, match="for task .mono. only"):
        TrainConfig(task="stereo", data=str(dataset), minutes=1, rel_weight=0.5).validate()


def test_crop_batch_keeps_pixels_aligned_across_tensors():
    import torch

    from depth_nodes.depth.train import CROP_MIN, crop_batch

    h, w = 30, 40
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    code = (yy * 1000 + xx)[None, None]  # every pixel names its own position
    batch = {"image": code.repeat(4, 3, 1, 1), "radar": code.repeat(4, 2, 1, 1), "depth": code.repeat(4, 1, 1, 1),
             "valid": torch.ones(4, 1, h, w)}
    rng = np.random.default_rng(3)
    sizes = set()
    for _ in range(20):
        out = crop_batch(batch, rng)
        ch, cw = out["image"].shape[-2:]
        sizes.add((ch, cw))
        assert all(v.shape[0] == 4 and v.shape[-2:] == (ch, cw) for v in out.values())
        assert round(h * CROP_MIN) <= ch <= h and round(w * CROP_MIN) <= cw <= w
        for i in range(4):
            # each sample is one contiguous window, the same in every tensor
            top_left = out["depth"][i, 0, 0, 0]
            y0, x0 = int(top_left // 1000), int(top_left % 1000)
            assert torch.equal(out["depth"][i, 0], code[0, 0, y0:y0 + ch, x0:x0 + cw])
            assert torch.equal(out["image"][i, 2], out["depth"][i, 0]) and torch.equal(out["radar"][i, 1], out["depth"][i, 0])
    assert len(sizes) > 5  # window sizes vary from batch to batch


def test_crop_aug_training_marks_the_card_focal_normalized(dataset, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "mono", "--data", str(dataset), "--minutes", "5", "--out", str(out), "--batch", "2",
                 "--steps", "3", "--crop-aug", "1.0", "--size", "64x48", "--json"]) == 0
    capsys.readouterr()
    card = json.loads((out / "mono_radar.json").read_text())
    assert card["focal_normalized"] is True and "--crop-aug 1.0" in card["training"]["command"]
    man = read_manifest(dataset)
    fx = man["camera"]["K"][0] * 64 / man["camera"]["width"]
    assert card["input_focal_px"][0] == pytest.approx(fx)
    assert main(["train", "mono", "--data", str(dataset), "--minutes", "5", "--out", str(tmp_path / "plain"),
                 "--batch", "2", "--steps", "1", "--json"]) == 0
    capsys.readouterr()
    assert json.loads((tmp_path / "plain" / "mono_radar.json").read_text())["focal_normalized"] is False


def test_coarse_decoder_training_from_fine_weights_adapts_them(dataset, tmp_path, capsys, caplog):
    from safetensors.torch import load_file

    common = ["train", "mono", "--data", str(dataset), "--minutes", "5", "--batch", "2", "--size", "64x48",
              "--json"]
    assert main([*common, "--out", str(tmp_path / "fine"), "--steps", "1"]) == 0
    fine = tmp_path / "fine" / "mono_radar.safetensors"
    out = tmp_path / "coarse"
    with caplog.at_level("INFO", logger="depth_nodes.depth.train"):
        assert main([*common, "--out", str(out), "--steps", "1", "--init", str(fine), "--coarse-decoder",
                     "--freeze", "stem,stages"]) == 0
    capsys.readouterr()
    assert "adapted the fine decoder's kernels" in caplog.text
    card = json.loads((out / "mono_radar.json").read_text())
    assert card["architecture"]["config"]["coarse_decoder"] is True
    assert "--coarse-decoder" in card["training"]["command"]
    from depth_nodes.depth.flops import count_params
    from depth_nodes.depth.mono_radar_net import MonoRadarNet

    assert card["params"] == count_params(MonoRadarNet()) == 1366610  # the frozen encoder counts too
    before, after = load_file(str(fine)), load_file(str(out / "mono_radar.safetensors"))
    assert all(np.array_equal(after[k].numpy(), before[k].numpy()) for k in after if k.startswith("stages."))
    assert not np.array_equal(after["decoder.0.0.weight"].numpy(), before["decoder.0.0.weight"].numpy())
    caplog.clear()  # from coarse weights nothing is adapted
    with caplog.at_level("INFO", logger="depth_nodes.depth.train"):
        assert main([*common, "--out", str(tmp_path / "again"), "--steps", "1", "--init",
                     str(out / "mono_radar.safetensors"), "--coarse-decoder"]) == 0
    capsys.readouterr()
    assert "started from" in caplog.text and "adapted" not in caplog.text
    from depth_nodes.depth.train import TrainConfig

    with pytest.raises(ValueError, match="coarse_decoder"):
        TrainConfig(task="stereo", data=str(dataset), minutes=1, coarse_decoder=True).validate()
    # on to 1x1 skip convolutions and head, from the 3x3 coarse decoder, encoder kept
    light = tmp_path / "light"
    assert main([*common, "--out", str(light), "--steps", "1", "--init", str(out / "mono_radar.safetensors"),
                 "--coarse-decoder", "--skip-kernel", "1", "--head-kernel", "1", "--freeze", "stem,stages"]) == 0
    capsys.readouterr()
    card = json.loads((light / "mono_radar.json").read_text())
    config = card["architecture"]["config"]
    assert config["skip_kernel"] == 1 and config["head_kernel"] == 1 and config["coarse_decoder"] is True
    assert "--skip-kernel 1 --head-kernel 1" in card["training"]["command"]
    assert card["params"] == count_params(MonoRadarNet(coarse_decoder=True, skip_kernel=1, head_kernel=1)) < 1366610
    assert card["gmac_320x240"] < 0.61
    light_state = load_file(str(light / "mono_radar.safetensors"))
    assert light_state["head.weight"].shape == (2, 16, 1, 1) and "decoder.3.skip.weight" in light_state
    assert all(np.array_equal(light_state[k].numpy(), before[k].numpy()) for k in light_state if k.startswith("stages."))
    from depth_nodes.depth.model_io import load_weights

    net, _ = load_weights(light / "mono_radar.safetensors")
    assert net.config == config
    for bad in ({"skip_kernel": 1}, {"coarse_decoder": True, "head_kernel": 2}):
        with pytest.raises(ValueError, match="kernel"):
            TrainConfig(task="mono", data=str(dataset), minutes=1, **bad).validate()
    with pytest.raises(ValueError, match="kernel"):
        TrainConfig(task="stereo", data=str(dataset), minutes=1, head_kernel=1).validate()
    with pytest.raises(ValueError, match="kernel"):
        TrainConfig(task="mono", data=str(dataset), minutes=1, skip_kernel=(3, 3, 1, 1)).validate()  # fine decoder
    TrainConfig(task="mono", data=str(dataset), minutes=1, coarse_decoder=True, skip_kernel=(3, 3, 1, 1)).validate()
    with pytest.raises(SystemExit):
        main([*common, "--out", str(tmp_path / "bad"), "--coarse-decoder", "--skip-kernel", "3,1"])
    capsys.readouterr()
    per_level = tmp_path / "per_level"
    assert main([*common, "--out", str(per_level), "--steps", "1", "--init", str(out / "mono_radar.safetensors"),
                 "--coarse-decoder", "--skip-kernel", "3,3,1,1"]) == 0
    capsys.readouterr()
    card = json.loads((per_level / "mono_radar.json").read_text())
    assert card["architecture"]["config"]["skip_kernel"] == [3, 3, 1, 1]
    assert "--skip-kernel 3,3,1,1" in card["training"]["command"] and "--head-kernel" not in card["training"]["command"]


def test_teacher_pulls_only_pixels_without_gt_toward_its_depth(dataset, tmp_path, capsys):
    import torch

    from depth_nodes.depth.losses import mono_loss, teacher_match
    from depth_nodes.depth.model_io import build_model

    log_pred = torch.zeros(1, 1, 1, 4, requires_grad=True)
    log_teacher = torch.tensor([1.0, -2.0, 5.0, 5.0]).view(1, 1, 1, 4)
    no_gt = torch.tensor([1.0, 1.0, 0.0, 0.0]).view(1, 1, 1, 4)
    loss = teacher_match(log_pred, log_teacher, no_gt)
    assert loss.item() == pytest.approx(1.5)  # (|0 - 1| + |0 + 2|) / 2: pixels with GT do not count
    loss.backward()
    assert log_pred.grad.flatten().tolist() == [-0.5, 0.5, 0.0, 0.0]

    torch.manual_seed(0)
    student, other = build_model("MonoRadarNet", {}).eval(), build_model("MonoRadarNet", {}).eval()
    item = DepthDataset(dataset, "all", size=(64, 48))[0]
    batch = {k: torch.as_tensor(v)[None] for k, v in item.items()}
    assert 0 < batch["valid"].mean() < 1  # the fake frames have sky rows
    plain, _ = mono_loss(student, batch)
    itself, parts = mono_loss(student, batch, teacher=student)
    assert parts["teacher"] == 0.0 and itself.item() == pytest.approx(plain.item())
    taught, parts = mono_loss(student, batch, teacher=other, teacher_weight=2.0)
    assert parts["teacher"] > 0 and taught.item() == pytest.approx(plain.item() + 2.0 * parts["teacher"], rel=1e-5)

    common = ["train", "mono", "--data", str(dataset), "--minutes", "5", "--batch", "2", "--steps", "1", "--json"]
    assert main([*common, "--out", str(tmp_path / "t")]) == 0
    teacher = tmp_path / "t" / "mono_radar.safetensors"
    assert main([*common, "--out", str(tmp_path / "s"), "--teacher", str(teacher), "--teacher-weight", "0.5"]) == 0
    capsys.readouterr()
    card = json.loads((tmp_path / "s" / "mono_radar.json").read_text())
    command = card["training"]["command"]
    assert f"--teacher {teacher}" in command and "--teacher-weight 0.5" in command
    from depth_nodes.depth.train import TrainConfig

    with pytest.raises(ValueError, match="teacher"):
        TrainConfig(task="stereo", data=str(dataset), minutes=1, teacher=str(teacher)).validate()
    with pytest.raises(ValueError, match="teacher"):
        TrainConfig(task="mono", data=str(dataset), minutes=1, teacher=str(tmp_path / "missing.safetensors")).validate()
    with pytest.raises(ValueError, match="teacher_weight"):
        TrainConfig(task="mono", data=str(dataset), minutes=1, teacher=str(teacher), teacher_weight=0).validate()


def test_stereo_refinement_only_training_from_narrower_weights(dataset, tmp_path, capsys, caplog):
    """--init widens the plain network into one with --local-radius; --freeze keeps the named parts
    bit for bit (BatchNorm statistics included) while the refinement trains."""
    from safetensors.torch import load_file

    plain = tmp_path / "plain"
    common = ["train", "stereo", "--data", str(dataset), "--minutes", "5", "--batch", "2", "--max-disparity", "16",
              "--json"]
    assert main([*common, "--out", str(plain), "--steps", "1"]) == 0
    capsys.readouterr()
    out = tmp_path / "wide"
    assert main([*common, "--out", str(out), "--steps", "2", "--init", str(plain / "stereo.safetensors"),
                 "--local-radius", "2", "--freeze", "stem,quarter,aggregate"]) == 0
    capsys.readouterr()
    card = json.loads((out / "stereo.json").read_text())
    assert card["architecture"]["config"]["local_radius"] == 2
    assert "--local-radius 2" in card["training"]["command"] and "--freeze" in card["training"]["command"]
    before, after = load_file(str(plain / "stereo.safetensors")), load_file(str(out / "stereo.safetensors"))
    for name, value in after.items():
        if name.startswith(("stem.", "quarter.", "aggregate.")):
            assert np.array_equal(value.numpy(), before[name].numpy()), name
    first = after["refine.0.0.weight"].numpy()
    assert first.shape[1] == before["refine.0.0.weight"].shape[1] + 5
    assert not np.array_equal(first[:, :-5], before["refine.0.0.weight"].numpy())  # the refinement trained
    assert np.abs(first[:, -5:]).max() > 0  # and learnt to use the new cue
    assert main([*common, "--out", str(tmp_path / "bad"), "--steps", "1", "--freeze", "nonsense"]) == 2
    assert "cannot freeze ['nonsense']" in caplog.text
    from depth_nodes.depth.train import TrainConfig

    with pytest.raises(ValueError, match="local_radius"):
        TrainConfig(task="mono", data=str(dataset), minutes=1, local_radius=2).validate()
    with pytest.raises(ValueError, match="init weights"):
        TrainConfig(task="stereo", data=str(dataset), minutes=1, init=str(tmp_path / "none.safetensors")).validate()
