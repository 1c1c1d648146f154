"""The packaged mono+radar weights load offline and give metric depth on unseen simulated worlds."""
from __future__ import annotations

import json

import numpy as np
import pytest

from depth_nodes.depth.interface import DepthInput, make_estimator
from depth_nodes.depth.metrics import depth_metrics
from depth_nodes.depth.model_io import card_path, default_weights
from depth_nodes.depth.radar_frame import radar_to_camera
from depth_nodes.geometry import pose_from_xyz_yaw
from depth_nodes.sim.suite import SensorSuite
from depth_nodes.sim.world import WorldSpec, build_world


def test_model_card_describes_the_packaged_file():
    card = json.loads(card_path(default_weights("mono_radar")).read_text())
    assert card["architecture"]["class"] == "MonoRadarNet"
    assert card["params"] <= 3_000_000 and card["gmac_320x240"] <= 1.5
    assert "command" in json.dumps(card)


@pytest.fixture(scope="module")
def frames():
    """Three frames from a forest world far outside the training seeds (10000+) and validation (20000+)."""
    world = build_world(WorldSpec("forest", 987654, "medium", (30.0, 14.0)))
    suite = SensorSuite(world)
    rng = np.random.default_rng(0)
    out = []
    for x in (0.0, 4.0, 8.0):
        f = suite.render(pose_from_xyz_yaw(world.start + [x, 0.0, 0.0], 0.1 * x), [2.0, 0.0, 0.0], rng, stereo=False)
        out.append((f.rgb, f.depth, radar_to_camera(f.radar.points, suite.rig.T_camera_radar)))
    return suite.rig.camera, out


def _abs_rel(est, camera, frames, with_radar: bool) -> float:
    pred, gt = [], []
    for rgb, depth, radar in frames:
        res = est.estimate(DepthInput(rgb=rgb, camera=camera, radar=radar if with_radar else None))
        assert res.depth.shape == depth.shape and np.isfinite(res.depth).all()
        pred.append(res.depth)
        gt.append(depth)
    return depth_metrics(np.stack(pred), np.stack(gt))["abs_rel"]


def test_packaged_weights_give_metric_depth_and_radar_helps(frames):
    camera, data = frames
    est = make_estimator("mono-radar")
    assert est.weights_status == "trained"
    with_radar = _abs_rel(est, camera, data, True)
    without = _abs_rel(est, camera, data, False)
    # bounds an untrained network fails (random init: abs_rel 0.46 here; the packaged weights 0.11)
    assert with_radar < 0.30
    assert with_radar < without


def test_packaged_stereo_hybrid_is_dense_and_beats_sgbm_on_middlebury():
    """Real stereo (Middlebury motorcycle): the hybrid fills SGBM's holes with the packaged
    network, so it is dense and, counting holes as wrong, has fewer bad pixels than SGBM."""
    from depth_nodes.depth.evaluate import eval_stereo_real

    res = eval_stereo_real(runtime="onnx")
    sgbm, net, hybrid = res["sgbm"], res["stereo_net"], res["stereo_hybrid"]
    assert net["status"] == hybrid["status"] == "trained"
    assert sgbm["density"] < 0.95 and hybrid["density"] == net["density"] == 1.0
    assert hybrid["bad2"] < min(sgbm["bad2"], net["bad2"]) and hybrid["epe"] < net["epe"]


def test_fp16_path_keeps_the_packaged_networks_accuracy(frames):
    """The GPU path's arithmetic (torch fp16, channels last), run on the CPU: the packaged
    network's depth stays within a fraction of a percent of fp32 and as accurate."""
    camera, data = frames
    full = make_estimator("mono-radar", runtime="torch", precision="fp32")
    half = make_estimator("mono-radar", runtime="torch", precision="fp16")
    assert (full.precision, half.precision) == ("fp32", "fp16") and half.runner._torch.half
    rgb, _, radar = data[1]
    a = full.estimate(DepthInput(rgb=rgb, camera=camera, radar=radar))
    b = half.estimate(DepthInput(rgb=rgb, camera=camera, radar=radar))
    assert b.depth.dtype == np.float32 and np.isfinite(b.depth).all()
    rel = np.abs(b.depth - a.depth) / a.depth
    assert np.median(rel) < 0.005 and rel.max() < 0.05, (np.median(rel), rel.max())
    assert np.abs(b.confidence - a.confidence).max() < 0.05
    assert abs(_abs_rel(half, camera, data, True) - _abs_rel(full, camera, data, True)) < 0.005


def test_fp16_stereo_network_on_middlebury_matches_fp32():
    from skimage.data import stereo_motorcycle

    from depth_nodes.camera import PinholeCamera

    left, right, _ = stereo_motorcycle()
    cam = PinholeCamera.from_fov(left.shape[1], left.shape[0], 60.0)
    inp = DepthInput(rgb=left, camera=cam, right_rgb=right, right_camera=cam.with_baseline(0.1))
    full, half = (make_estimator("stereo", runtime="torch", precision=p) for p in ("fp32", "fp16"))
    (da, _), (db, _) = full.disparity(inp), half.disparity(inp)
    ok = np.isfinite(da) & np.isfinite(db)
    assert ok.mean() > 0.99
    err = np.abs(db[ok] - da[ok])
    # disparities of up to ~70 px at this size: fp16 keeps them to a fraction of a pixel
    assert np.median(err) < 0.05 and np.percentile(err, 99) < 0.5, (np.median(err), np.percentile(err, 99))
    # the refined hybrid too (its refiner warps the right image by the disparity: NaN at some
    # pixels before the warp sampled in float32)
    refined = [make_estimator("stereo-hybrid", runtime="torch", precision=p, refine=True).disparity(inp)[0]
               for p in ("fp32", "fp16")]
    assert np.isfinite(refined[1]).mean() == np.isfinite(refined[0]).mean() > 0.99
    ok = np.isfinite(refined[0])
    assert np.median(np.abs(refined[1][ok] - refined[0][ok])) < 0.05
