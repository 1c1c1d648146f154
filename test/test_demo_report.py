"""`depth-nodes demo` pieces without running the graph: the report from a recorded bag, parameters, CLI.

The bag is written the way the demo's bag_recorder writes it (rclpy messages
serialised to CDR, log time = simulated time), from a synthetic straight flight.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("rclpy")

from rclpy.serialization import serialize_message  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from depth_nodes.camera import PinholeCamera  # noqa: E402
from depth_nodes.eval.bagio import BagSink  # noqa: E402
from depth_nodes.eval.demo import _parse_size  # noqa: E402
from depth_nodes.eval.demo_report import read_flight_bag, stage_latencies, write_demo_report  # noqa: E402
from depth_nodes.geometry import pose_from_xyz_yaw  # noqa: E402
from depth_nodes.ros.conversions import array_to_image_msg, pose_to_odometry_msg  # noqa: E402
from depth_nodes.ros.conversions_traj import trajectory_to_msg  # noqa: E402
from depth_nodes.ros.demo_graph import (RECORDED_TYPES, FlightWatch, demo_node_params, launch_world,  # noqa: E402
                                        recorded_topics, with_flight_ceiling)
from depth_nodes.sim.world import WorldSpec, build_world  # noqa: E402
from depth_nodes.trajectory import Trajectory  # noqa: E402

T0 = 1_700_000_000.0
N = 30  # camera frames at 10 Hz: 3 s of flight at 1 m/s along +x
CAM = PinholeCamera.from_fov(32, 24, 90.0)


def _write_flight_bag(path) -> None:
    rng = np.random.default_rng(0)
    with BagSink(path) as sink:
        for topic in ("camera/image_raw", "depth/image", "ground_truth/depth", "ground_truth/odom",
                      "planner/trajectory", "planner/status", "sim/status"):
            sink.add_topic(topic, RECORDED_TYPES[topic])
        # a recorder on simulated time logs what arrives before its first /clock at time 0
        early = np.zeros((CAM.height, CAM.width), np.float32)
        sink.write_raw("depth/image", 0, serialize_message(array_to_image_msg(early, "32FC1", stamp=0.0,
                                                                              frame_id=CAM.frame_id)))
        for k in range(N):
            t = T0 + 0.1 * k
            ns = int(round(t * 1e9))
            pos = np.array([0.1 * k, 0.0, 1.5])
            rgb = rng.integers(0, 255, (CAM.height, CAM.width, 3), dtype=np.uint8)
            gt = np.full((CAM.height, CAM.width), 5.0 + k, np.float32)
            msgs = {
                "ground_truth/odom": pose_to_odometry_msg(pose_from_xyz_yaw(pos, 0.0), np.array([1.0, 0, 0, 0, 0, 0]),
                                                          stamp=t, frame_id="map"),
                "camera/image_raw": array_to_image_msg(rgb, "rgb8", stamp=t, frame_id=CAM.frame_id),
                "depth/image": array_to_image_msg(gt * 1.1, "32FC1", stamp=t, frame_id=CAM.frame_id),
                "ground_truth/depth": array_to_image_msg(gt, "32FC1", stamp=t, frame_id=CAM.frame_id),
                "planner/trajectory": trajectory_to_msg(Trajectory(
                    t=[0.0, 1.0], pos=[pos, pos + [1.0, 0.5, 0.0]], vel=[[1.0, 0, 0]] * 2, acc=np.zeros((2, 3)),
                    yaw=[0.0, 0.0], stamp=t)),
                "planner/status": String(data=json.dumps({"status": "ok" if k else "stale_depth", "stamp": t})),
                "sim/status": String(data=json.dumps({"t": 0.1 * k, "reached_goal": k == N - 1, "collided": False})),
            }
            for topic, msg in msgs.items():
                sink.write_raw(topic, ns, serialize_message(msg))


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    bag = tmp_path_factory.mktemp("demo") / "bag"
    _write_flight_bag(bag)
    return read_flight_bag(bag, "depth/image", n_frames=3)


def test_read_flight_bag_path_plans_statuses_and_rates(recording):
    rec = recording
    assert rec.path.shape == (N, 3)
    np.testing.assert_allclose(rec.path[-1], [0.1 * (N - 1), 0.0, 1.5], atol=1e-9)
    np.testing.assert_allclose(rec.path_t - rec.path_t[0], 0.1 * np.arange(N), atol=1e-6)
    assert len(rec.trajectories) == N and rec.trajectories[0][1].shape[1] == 3
    np.testing.assert_allclose(rec.trajectories[3][1][-1], [1.3, 0.5, 1.5], atol=1e-6)
    assert rec.planner_statuses == {"stale_depth": 1, "ok": N - 1}
    assert rec.sim_status["reached_goal"] is True
    assert rec.topic_counts["camera/image_raw"] == N
    assert rec.topic_rates_hz["ground_truth/odom"] == pytest.approx(10.0, rel=1e-3)
    assert rec.topic_counts["depth/image"] == N + 1  # counted, but left out of the rate
    assert rec.topic_rates_hz["depth/image"] == pytest.approx(10.0, rel=1e-3)


def test_read_flight_bag_samples_matching_frames(recording):
    frames = recording.frames
    assert len(frames) == 3
    for f in frames:
        assert f["rgb"].shape == (CAM.height, CAM.width, 3) and f["rgb"].dtype == np.uint8
        # estimate and ground truth of the same stamp (the synthetic estimate is 10 % long)
        np.testing.assert_allclose(f["pred"], f["gt"] * 1.1, rtol=1e-6)
    assert frames[0]["title"] != frames[-1]["title"]


def test_read_flight_bag_without_path_is_an_error(tmp_path):
    with BagSink(tmp_path / "bag") as sink:
        sink.add_topic("sim/status", RECORDED_TYPES["sim/status"])
        sink.write_raw("sim/status", 1, serialize_message(String(data="{}")))
    with pytest.raises(ValueError, match="ground_truth/odom|odom"):
        read_flight_bag(tmp_path / "bag")


def test_write_demo_report_files(recording, tmp_path):
    world = build_world(WorldSpec("forest", 3, "sparse", (12.0, 8.0)))
    diag = {"/primitive_planner_node": {"latency_ms_median/plan": "12.50", "latency_ms_p90/plan": "20.00",
                                        "rate_hz/odom": "50.0"},
            "/sim_node": {"lockstep_timeouts": "0"}}
    stages = stage_latencies(diag)
    assert stages == [{"node": "primitive_planner_node", "stage": "plan", "median_ms": 12.5, "p90_ms": 20.0}]
    summary = {"goal_reached": True, "collisions": 0, "end": "reached_goal", "flight_time_s": 2.9,
               "world": "forest", "depth": "mono-radar", "lockstep_timeouts": 0, "planner_statuses": {"ok": 29},
               "topic_counts": recording.topic_counts, "topic_rates_hz_sim": recording.topic_rates_hz,
               "topic_rates_hz_wall": {"camera/camera_info": 3.0}, "stage_latencies_ms": stages}
    files = write_demo_report(tmp_path, summary, recording, world, world.goal, stages)
    assert set(files) == {"summary", "topdown", "depth_frames", "report"}
    for f in files.values():
        assert f.is_file() and f.stat().st_size > 0
    assert json.loads(files["summary"].read_text())["goal_reached"] is True
    html = files["report"].read_text()
    assert "primitive_planner_node" in html and "camera/image_raw" in html


def test_demo_parameters_and_arguments():
    params = demo_node_params("mono-radar", (160, 120), 10.0)
    assert params["sim_node"]["publish_radar"] and not params["sim_node"]["publish_stereo"]
    assert params["mono_depth_node"] == {"mode": "mono-radar"}
    assert (params["sim_node"]["image_width"], params["sim_node"]["image_height"]) == (160, 120)
    assert "mono_depth_node" not in demo_node_params("gt", (64, 48), 1.0)
    with pytest.raises(ValueError, match="depth must be one of"):
        demo_node_params("lidar", (64, 48), 1.0)
    assert "depth/image" not in recorded_topics({"depth_source": "gt"})
    assert "depth/image" in recorded_topics({"depth_source": "estimate"})
    assert _parse_size("320x240") == (320, 240)
    for bad in ("320", "axb", "10x10"):
        with pytest.raises(ValueError, match="image-size"):
            _parse_size(bad)
    # flight limits are checked before any process starts
    from depth_nodes.cli import main
    for bad in (["--stall", "-1"], ["--timeout", "0"], ["--ceiling", "0"]):
        assert main(["demo", *bad, "--out", "/nonexistent/demo"]) == 2, bad


def test_graph_flights_get_the_benchmark_ceiling_above_the_start():
    from depth_nodes.eval.flight import CEILING_ABOVE_START_M
    from depth_nodes.graph import parse_launch_args
    from depth_nodes.sim.world import NAMED_DENSITY

    world = launch_world(parse_launch_args({"world": "forest", "seed": "7", "extent": "20x10"}))
    same = build_world(WorldSpec("forest", 7, NAMED_DENSITY["forest"]["medium"], (20.0, 10.0)))
    np.testing.assert_array_equal(world.start, same.start)
    given = demo_node_params("mono-radar", (160, 120), 10.0)
    params = with_flight_ceiling(given, float(world.start[2]))
    assert params["primitive_planner_node"]["max_altitude"] == pytest.approx(world.start[2] + CEILING_ABOVE_START_M)
    assert params["sim_node"] == given["sim_node"] and "primitive_planner_node" not in given  # a copy
    own = with_flight_ceiling({"primitive_planner_node": {"max_altitude": 9.0}}, float(world.start[2]))
    assert own["primitive_planner_node"]["max_altitude"] == 9.0  # the caller's ceiling wins
    low = with_flight_ceiling(given, float(world.start[2]), 1.0)  # the demo's lower ceiling
    assert low["primitive_planner_node"]["max_altitude"] == pytest.approx(world.start[2] + 1.0)
    with pytest.raises(ValueError, match="above the start"):
        with_flight_ceiling(given, float(world.start[2]), 0.0)


def test_flight_watch_tells_a_slow_flight_from_a_stalled_one():
    watch = FlightWatch(timeout_s=200.0, stall_s=10.0, start=50.0)
    # the simulator starts late, then advances slowly: never stalled for 10 s
    assert watch.check(59.0, None) is None
    assert watch.check(59.5, 0.0) is None
    assert [watch.check(59.5 + 9 * k, 0.1 * k) for k in range(1, 10)] == [None] * 9
    # time stops advancing (the same or an older report): stalled 10 s after the last advance
    t_last = 59.5 + 9 * 9
    assert watch.check(t_last + 9.9, 0.9) is None and watch.check(t_last + 9.95, 0.5) is None
    assert watch.check(t_last + 10.0, 0.9) == "stalled"
    # without a stall limit only the total budget counts, also before the first report
    bare = FlightWatch(timeout_s=100.0, start=50.0)
    assert bare.check(149.9, None) is None and bare.check(150.0, None) == "timeout"
    # the total budget ends a flight that keeps advancing
    assert FlightWatch(100.0, 10.0, start=50.0).check(150.0, 1.0) == "timeout"
    # a simulator that never reports stalls from the start
    assert FlightWatch(100.0, 10.0, start=50.0).check(60.0, None) == "stalled"
    for bad in ({"timeout_s": 0.0}, {"timeout_s": 10.0, "stall_s": 0.0}, {"timeout_s": float("nan")}):
        with pytest.raises(ValueError):
            FlightWatch(**bad)
