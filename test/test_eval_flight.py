"""Closed-loop flight harness on a small world: reaches the goal, deterministic, validated."""
from __future__ import annotations

import numpy as np
import pytest

from depth_nodes.eval.flight import FlightConfig, aggregate, run_flight

SMALL = dict(world="forest", density="sparse", extent=(18.0, 10.0), speed=2.0, seed=3)


@pytest.mark.slow
def test_small_forest_flight_reaches_goal_and_is_deterministic():
    a = run_flight(FlightConfig(**SMALL))
    assert a.success and not a.collided, a.end_reason
    assert np.linalg.norm(a.path[-1] - a.goal) <= 1.0
    assert a.min_clearance_m >= 0.25          # never closer than the robot radius
    assert 0.3 < a.mean_speed_m_s <= 2.0 * 1.25
    b = run_flight(FlightConfig(**SMALL))
    np.testing.assert_array_equal(a.path, b.path)
    agg = aggregate([a, b])
    assert agg["success_rate"] == 1.0 and agg["collision_rate"] == 0.0 and agg["trials"] == 2


@pytest.mark.parametrize("kw,match", [
    (dict(depth="lidar"), "depth must be one of"),
    (dict(speed=0.0), "speed"),
    (dict(speed=40.0), "<= 15"),
    (dict(sim_dt=0.5), "sim_dt"),
])
def test_flight_config_rejects_bad_values(kw, match):
    with pytest.raises(ValueError, match=match):
        FlightConfig(**kw)
