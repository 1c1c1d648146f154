"""`eval map` with estimated depth beside GT depth, and `bench map-memory` (bounded memory over a flight)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from depth_nodes.cli import main
from depth_nodes.eval.map_eval import evaluate_sim_map, route_poses
from depth_nodes.eval.map_memory import MemoryFlightConfig, back_and_forth, fly_memory
from depth_nodes.mapping.config import TsdfConfig
from depth_nodes.sim.rig import SensorRig
from depth_nodes.sim.route import plan_route, route_trajectory
from depth_nodes.sim.world import WorldSpec, build_world


@pytest.fixture(scope="module")
def forest():
    return build_world(WorldSpec(kind="forest", seed=3))


def test_estimated_depth_map_scored_beside_gt(forest):
    rig = SensorRig.with_size(160, 120)
    poses, vel = route_poses(forest, 4)
    cfg = TsdfConfig(voxel_size=0.1, depth_max=12.0)
    res = evaluate_sim_map(forest, rig, poses, vel, "sgbm", cfg, 0.15, seed=3)
    assert set(res) == {"gt", "sgbm"}
    gt, est = res["gt"], res["sgbm"]
    assert gt["frames_integrated"] == est["frames_integrated"] == 4
    assert gt["gt_points"] == est["gt_points"] > 0  # both scored against the same surface samples
    assert gt["accuracy_m_median"] < 0.05 and gt["completeness"] > 0.8
    # stereo depth is noisier than ground truth, but it still maps the same surfaces
    assert gt["accuracy_m_median"] < est["accuracy_m_median"] < 1.0
    assert 0.0 < est["completeness"] <= 1.0
    assert 0.0 < est["depth_abs_rel_median"] < 0.5 and est["depth_ms_median"] > 0
    assert "depth_abs_rel_median" not in gt
    with pytest.raises(ValueError, match="mode"):
        evaluate_sim_map(forest, rig, poses, vel, "lidar", cfg)


def test_eval_map_cli_side_by_side(capsys):
    assert main(["eval", "map", "--mode", "sgbm", "--frames", "3", "--width", "160", "--height", "120",
                 "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    r = json.loads(out[0])
    assert r["mode"] == "sgbm" and r["frames_integrated"] == 3 and r["seed"] == 3
    assert r["gt_depth"]["accuracy_m_median"] < r["accuracy_m_median"]
    assert r["gt_depth"]["completeness"] > 0.8 and r["image_size"] == [160, 120]


def test_eval_map_bag_without_ground_truth_is_an_error(tmp_path, capsys):
    assert main(["eval", "map", "--bag", str(tmp_path / "missing.mcap"), "--json"]) != 0
    assert capsys.readouterr().out == ""


def test_back_and_forth_reverses_heading(forest):
    traj = route_trajectory(plan_route(forest))
    period = traj.t[-1] - traj.t[0]
    rate = 10.0
    n = int(2.5 * period * rate)
    pos, yaw = back_and_forth(traj, rate, n)
    assert pos.shape == (n, 3) and yaw.shape == (n,)
    # on the route the whole time, at its far end after one period, back at the start after two
    assert np.allclose(pos[0], traj.pos[0]) and np.allclose(pos[int(2 * period * rate)], traj.pos[0], atol=0.2)
    assert np.allclose(pos[int(period * rate)], traj.pos[-1], atol=0.2)
    k_fwd, k_back = int(0.5 * period * rate), int(1.5 * period * rate)  # same point, opposite ways
    assert np.allclose(pos[k_fwd], pos[k_back], atol=0.2)
    assert abs(np.cos(yaw[k_fwd] - yaw[k_back]) + 1.0) < 0.05
    step = np.linalg.norm(np.diff(pos, axis=0), axis=1)
    assert step.max() < 0.5  # no jumps at the turns


def test_short_flight_keeps_blocks_within_budget_and_window(forest):
    cfg = MemoryFlightConfig(minutes=15 / 60, rate_hz=10.0, sample_every=15, width=64, height=48,
                             depth_max=8.0, window_radius_m=6.0, block_budget=3000)
    r = fly_memory(forest, cfg)
    assert r["frames"] == r["frames_integrated"] == 150
    assert r["blocks_max"] <= cfg.block_budget
    assert r["blocks_dropped_total"] > 0  # the window dropped blocks left behind
    assert r["blocks_farthest_m_end"] <= cfg.window_radius_m + 0.8  # window radius + one block
    assert r["rss_mb_peak"] >= max(r["rss_mb_start"], r["rss_mb_end"]) > 0
    assert len(r["samples"]["t_s"]) == len(r["samples"]["rss_mb"]) == 11  # every 15 frames + the last
    assert max(r["samples"]["blocks"]) <= cfg.block_budget


@pytest.mark.parametrize("bad", [dict(minutes=0.0), dict(width=4), dict(sample_every=0), dict(block_budget=1.5),
                                 dict(rate_hz=True)])
def test_memory_flight_config_validation(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        MemoryFlightConfig(**bad)
