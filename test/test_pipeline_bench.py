"""`depth-nodes bench pipeline` end to end on a short recorded bag (real processes over DDS)."""
from __future__ import annotations

import math

import pytest

pytest.importorskip("rclpy")

from depth_nodes.ros.pipeline_bench import bench_pipeline  # noqa: E402

pytestmark = [pytest.mark.dds, pytest.mark.slow]


def test_bench_replays_a_recorded_flight_into_the_graph():
    out = bench_pipeline("gt", duration_s=4.0, warmup_s=1.0, world="forest", density="sparse", seed=3,
                         source="bag")
    info = out["run_info"]
    assert info["source"] == "bag" and info["launch_args"]["use_sim"] == "false"
    assert info["node_omp_num_threads"] == "1"
    assert "ground_truth/depth" in info["launch_args"]["bag_topics"]
    # the bag's frames went through the planner, which had the world's goal (not exploring)
    assert out["camera_frames"] >= 15 and out["e2e_frames_measured"] >= 10
    assert math.isfinite(out["e2e_latency_ms_median"]) and out["e2e_latency_ms_median"] > 0
    assert "no_goal_explore" not in out["planner_statuses"]
    assert out["planner_statuses"].get("ok", 0) + out["planner_statuses"].get("no_feasible", 0) >= 10


def test_bench_rejects_bad_arguments():
    with pytest.raises(ValueError, match="--source"):
        bench_pipeline("gt", 1.0, 0.0, "forest", "sparse", 3, source="camera")
    with pytest.raises(ValueError, match="--node-threads"):
        bench_pipeline("gt", 1.0, 0.0, "forest", "sparse", 3, node_threads=-1)
