"""`depth-nodes eval replay`: sim bags (gt, sgbm), a bag without ground truth, remaps and errors."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from depth_nodes.eval.replay import (ReplayConfig, dedupe_by_voxel, parse_pose7, radar_points, replay_bag,
                                     resolve_extrinsics)

T0 = 3_000_000_000
NS = "/drone1"


@pytest.fixture(scope="module")
def sim_bag(tmp_path_factory):
    """A 2 s, 160x120 sim bag in a small sparse forest (20 frames, ground truth + world spec + rig)."""
    from depth_nodes.sim.bag import record_bag
    from depth_nodes.sim.rig import SensorRig
    from depth_nodes.sim.world import WorldSpec

    path = tmp_path_factory.mktemp("replay") / "sim"
    record_bag(path, WorldSpec("forest", seed=3, density="sparse", extent=(20.0, 12.0)), duration_s=2.0,
               rig=SensorRig.with_size(160, 120), seed=1, progress=False)
    return path


def _write_plain_stereo_bag(path, n_images: int = 8, disparity_px: int = 8):
    """A bag without ground truth under non-default topic names: a hovering stereo camera looking at a
    random-textured plane (right image = left shifted by ``disparity_px``), odometry at 20 Hz."""
    from depth_nodes.camera import PinholeCamera
    from depth_nodes.codec import array_to_image_fields, matrix_to_pose_fields, pinhole_to_camera_info_fields
    from depth_nodes.eval.bagio import BagSink
    from depth_nodes.geometry import pose_from_xyz_yaw

    cam = PinholeCamera.from_fov(160, 120, 90.0, frame_id="cam")
    right_cam = cam.with_baseline(0.1, frame_id="cam_right")
    texture = np.random.default_rng(5).integers(0, 256, (120, 160 + disparity_px), dtype=np.uint8)
    left = np.repeat(texture[:, :160, None], 3, axis=2)
    right = np.repeat(texture[:, disparity_px:, None], 3, axis=2)  # right x = left x - disparity
    topics = {"left": f"{NS}/cam/left/image", "left_info": f"{NS}/cam/left/info",
              "right": f"{NS}/cam/right/image", "right_info": f"{NS}/cam/right/info", "odom": f"{NS}/odometry"}
    with BagSink(path) as sink:
        for role, topic in topics.items():
            sink.add_topic(topic, "nav_msgs/msg/Odometry" if role == "odom" else
                           "sensor_msgs/msg/CameraInfo" if role.endswith("info") else "sensor_msgs/msg/Image")
        pose = matrix_to_pose_fields(pose_from_xyz_yaw([0.0, 0.0, 1.5], 0.0))
        for k in range(2 * n_images + 1):
            sink.write_fields(topics["odom"], T0 + k * 50_000_000, {"pose": {"pose": pose}}, frame_id="map")
        for i in range(n_images):
            t = T0 + i * 100_000_000
            sink.write_fields(topics["left"], t, array_to_image_fields(left, "rgb8"), frame_id="cam")
            sink.write_fields(topics["left_info"], t, pinhole_to_camera_info_fields(cam), frame_id="cam")
            sink.write_fields(topics["right"], t, array_to_image_fields(right, "rgb8"), frame_id="cam_right")
            sink.write_fields(topics["right_info"], t, pinhole_to_camera_info_fields(right_cam), frame_id="cam_right")
    return topics, cam.fx * 0.1 / disparity_px


def _finite_leaves(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _finite_leaves(v)
    elif isinstance(obj, float):
        yield obj


def test_gt_replay_is_exact_and_scores_map_and_planner(sim_bag, tmp_path):
    from depth_nodes.eval.replay_report import write_metrics, write_replay_report

    r = replay_bag(sim_bag, ReplayConfig(mode="gt", progress=False))
    m = r.metrics
    assert m["ground_truth"] is True and m["frames"] == 20 and m["frames_processed"] == 20
    d = m["depth"]
    assert d["abs_rel"] < 1e-6 and d["rmse"] < 1e-5 and d["delta1"] == 1.0 and d["density"] == 1.0
    assert set(d["bins"]) == {"0-5", "5-10", "10-20", "20+"}
    assert len(r.per_frame) == 20 and all(row["abs_rel"] < 1e-6 for row in r.per_frame)
    assert m["map"]["accuracy_m_median"] < 0.08 and m["map"]["completeness"] > 0.7
    p = m["planner"]
    assert 0.0 <= p["feasible_fraction"] <= 1.0 and sum(p["status_counts"].values()) == 20
    assert p["true_clearance_m_min"] > 0.0 and p["goal"] is not None
    assert m["self_consistency"]["map_agreement_median"] > 0.8
    for stage in ("read", "depth", "map", "esdf", "plan", "frame"):
        assert m[f"{stage}_ms_median"] > 0.0
    assert m["replay_wall_over_bag_duration"] > 0 and m["fps"] > 0
    assert m["extrinsics"]["source"] == {"T_body_camera": "sim/rig", "T_camera_radar": "sim/rig"}
    assert len(r.path_xyz) == 20 and r.gt_path_xyz is not None and len(r.surface_points) > 100
    np.testing.assert_allclose(r.path_xyz, r.gt_path_xyz, atol=1e-6)  # noise-free odometry
    assert len(r.samples) == 4
    metrics_path = write_metrics(tmp_path, r, {"data": str(sim_bag)})
    doc = json.loads(metrics_path.read_text())
    assert len(doc["per_frame"]) == 20 and doc["verdict"][0]["check"] == "replay_wall_over_bag_duration"
    html = write_replay_report(tmp_path, r, {"data": str(sim_bag)}).read_text()
    assert html.index("Verdict") < html.index("Depth accuracy") < html.index("Latency") < html.index("Sample frames")
    assert html.count("data:image/png;base64,") >= 5 and "<script" not in html


def test_sgbm_replay_cli_writes_outputs(sim_bag, tmp_path, capsys):
    from depth_nodes.cli import main

    out = tmp_path / "sgbm"
    rc = main(["eval", "replay", str(sim_bag), "--mode", "sgbm", "--max-frames", "6", "--out", str(out), "--json"])
    assert rc == 0
    m = json.loads(capsys.readouterr().out)
    assert m["frames"] == 6 and m["ground_truth"] is True and m["mode"] == "sgbm"
    d = m["depth"]
    assert 0.0 < d["density"] < 1.0 and d["abs_rel"] is not None and math.isfinite(d["abs_rel"])
    assert all(math.isfinite(v) for v in _finite_leaves(d))
    assert m["run"]["data"] == str(sim_bag) and m["run"]["mode"] == "sgbm" and "threads" in m["run"]
    assert "seed" in m["run"] and "per_frame" not in m
    assert (out / "report.html").is_file()
    assert len(json.loads((out / "metrics.json").read_text())["per_frame"]) == 6


def test_bag_without_ground_truth_remapped_topics(tmp_path, capsys):
    from depth_nodes.cli import main

    bag = tmp_path / "plain"
    topics, depth_m = _write_plain_stereo_bag(bag)
    out = tmp_path / "out"
    args = ["eval", "replay", str(bag), "--mode", "sgbm", "--out", str(out), "--json"]
    for role, topic in topics.items():
        args += ["--topic", f"{role}={topic}"]
    assert main(args) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["ground_truth"] is False and "no ground truth" in m["ground_truth_note"]
    assert m["depth"] is None and m["map"] is None and "true_clearance_m_min" not in m["planner"]
    assert m["frames"] == 8 and m["depth_ms_median"] > 0 and m["coverage"]["valid_depth_fraction_mean"] > 0.3
    assert m["extrinsics"]["source"]["T_body_camera"] == "default sim rig"
    checks = {row["check"] for row in m["verdict"]}
    assert not any(c.startswith(("depth.", "map.", "planner.true")) for c in checks)
    # a hovering camera over a fixed plane agrees with its own map
    assert m["self_consistency"]["map_agreement_median"] > 0.8
    doc = json.loads((out / "metrics.json").read_text())
    med = np.nanmedian([row["valid_fraction"] for row in doc["per_frame"]])
    assert med > 0.3 and "abs_rel" not in doc["per_frame"][0]
    assert "no ground truth" in (out / "report.html").read_text()
    assert depth_m == pytest.approx(1.0)


def test_missing_roles_and_weights_give_clear_errors(sim_bag, tmp_path, caplog):
    from depth_nodes.cli import main

    bag = tmp_path / "plain"
    topics, _ = _write_plain_stereo_bag(bag, n_images=2)
    with pytest.raises(ValueError, match=r"role\(s\) left .*remap"):
        replay_bag(bag, ReplayConfig(mode="sgbm", progress=False))  # default topic names absent
    with pytest.raises(ValueError, match="gt_depth"):
        replay_bag(bag, ReplayConfig(mode="gt", topics={"image": topics["left"], "camera_info": topics["left_info"],
                                                        "odom": topics["odom"]}, progress=False))
    missing = tmp_path / "none.safetensors"
    rc = main(["eval", "replay", str(sim_bag), "--mode", "mono", "--weights", str(missing),
               "--out", str(tmp_path / "o"), "--json"])
    assert rc == 2 and str(missing) in caplog.text
    assert main(["eval", "replay", str(sim_bag), "--camera-to-body", "1,2,3", "--out", str(tmp_path / "o")]) == 2
    assert "--camera-to-body" in caplog.text


def test_extrinsics_and_radar_helpers():
    from depth_nodes.eval.decode import Cloud
    from depth_nodes.sim.rig import SensorRig

    rig = SensorRig()
    ext = resolve_extrinsics(rig.to_dict())
    np.testing.assert_allclose(ext.T_body_camera, rig.T_body_camera)
    np.testing.assert_allclose(ext.T_camera_radar, rig.T_camera_radar, atol=1e-12)
    override = parse_pose7("0,0,0.5,0,0,0,1", "--camera-to-body")
    ext = resolve_extrinsics(rig.to_dict(), T_body_camera=override)
    assert ext.source["T_body_camera"] == "option" and ext.T_body_camera[2, 3] == 0.5
    ext = resolve_extrinsics(None)
    assert ext.T_camera_radar is None and ext.source["T_body_camera"] == "default sim rig"
    with pytest.raises(ValueError, match="--radar-to-camera"):
        parse_pose7("0,0,0,0,0,0,nan", "--radar-to-camera")
    fields = np.zeros(2, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("velocity", "f4")])
    fields["velocity"] = [1.5, -2.0]
    cloud = Cloud(np.array([[1.0, 0.0, 0.0], [2.0, 0.0, 0.0]], np.float32), fields, "radar")
    pts = radar_points(cloud, rig.T_camera_radar, "camera_optical_frame")
    assert pts.shape == (2, 5) and pts[0, 3] == 1.5 and np.all(pts[:, 4] == 0)
    np.testing.assert_allclose(pts[0, :3], rig.T_camera_radar[:3, :3] @ [1, 0, 0] + rig.T_camera_radar[:3, 3],
                               atol=1e-6)
    same = radar_points(Cloud(cloud.xyz, fields, "camera_optical_frame"), rig.T_camera_radar, "camera_optical_frame")
    np.testing.assert_allclose(same[:, :3], cloud.xyz)
    pts = np.array([[0.01, 0.01, 0.01], [0.02, 0.02, 0.02], [0.5, 0.0, 0.0]])
    np.testing.assert_allclose(dedupe_by_voxel(pts, 0.1), pts[[0, 2]])
    with pytest.raises(ValueError, match="mode"):
        ReplayConfig(mode="lidar")
    with pytest.raises(ValueError, match="max_frames"):
        ReplayConfig(max_frames=0)
