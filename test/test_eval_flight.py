"""Closed-loop flight harness on a small world: reaches the goal, deterministic, validated."""
from __future__ import annotations

import numpy as np
import pytest

from depth_nodes.eval.flight import FlightConfig, FlightResult, aggregate, run_flight

SMALL = dict(world="forest", density="sparse", extent=(18.0, 10.0), speed=2.0, seed=3)


@pytest.mark.slow
def test_small_forest_flight_reaches_goal_and_is_deterministic():
    a = run_flight(FlightConfig(**SMALL))
    assert a.success and not a.collided, a.end_reason
    assert np.linalg.norm(a.path[-1] - a.goal) <= 1.0
    assert a.end_distance_to_goal_m == pytest.approx(np.linalg.norm(a.path[-1] - a.goal))
    assert a.min_clearance_m >= 0.25          # never closer than the robot radius
    assert 0.3 < a.mean_speed_m_s <= 2.0 * 1.25
    s = a.summary()
    for key in ("plan_ms_median", "integrate_ms_median", "esdf_ms_median", "plan_cpu_ms_median",
                "esdf_cpu_ms_median", "plan_generate_ms_median", "plan_depth_prepare_ms_median",
                "plan_check_ms_median", "plan_select_ms_median"):
        assert s[key] > 0, key
    assert len(a.esdf_ms) == len(a.plan_ms) == sum(a.statuses.values())
    b = run_flight(FlightConfig(**SMALL))
    np.testing.assert_array_equal(a.path, b.path)
    agg = aggregate([a, b])
    assert agg["success_rate"] == 1.0 and agg["collision_rate"] == 0.0 and agg["trials"] == 2


@pytest.mark.parametrize("kw,match", [
    (dict(depth="lidar"), "depth must be one of"),
    (dict(speed=0.0), "speed"),
    (dict(speed=40.0), "<= 15"),
    (dict(sim_dt=0.5), "sim_dt"),
    (dict(depth="gt", depth_options={"refine": True}), "do not apply"),
    (dict(depth="mono-radar", depth_options={"refine": True}), "do not apply"),
])
def test_flight_config_rejects_bad_values(kw, match):
    with pytest.raises(ValueError, match=match):
        FlightConfig(**kw)


def test_flights_pass_depth_options_to_the_estimator():
    from depth_nodes.eval.commands import _parse_options
    from depth_nodes.eval.flight import DepthSource

    assert _parse_options("refine=true,texture_min=4,agreement=first,passes=3") == \
        {"refine": True, "texture_min": 4, "agreement": "first", "passes": 3}
    assert _parse_options(None) == {}
    with pytest.raises(ValueError, match="key=value"):
        _parse_options("refine")
    cfg = FlightConfig(depth="stereo-hybrid", depth_options={"texture_min": 4.0})
    source = DepthSource(cfg.depth, suite=None, options=cfg.depth_options)
    assert source.estimator.texture_min == 4.0 and source.estimator.refiner is None
    assert DepthSource("stereo-hybrid", suite=None).estimator.texture_min == 0.0
    assert DepthSource("stereo-hybrid", suite=None).estimator.nearest_max_gap == float("inf")  # no limit


def test_flights_can_use_weights_other_than_the_packaged_ones(tmp_path):
    import json
    import shutil

    from depth_nodes.depth.model_io import card_path, default_weights
    from depth_nodes.eval.flight import DepthSource

    packaged = default_weights("mono_radar")
    weights = tmp_path / "candidate.safetensors"
    shutil.copy(packaged, weights)
    card = json.loads(card_path(packaged).read_text())
    card["input_size"] = [96, 72]  # tells the two apart
    card_path(weights).write_text(json.dumps(card))
    cfg = FlightConfig(depth="mono-radar", weights=str(weights))
    assert DepthSource(cfg.depth, suite=None, weights=cfg.weights).estimator.card["input_size"] == [96, 72]
    assert DepthSource(cfg.depth, suite=None).estimator.card["input_size"] == [160, 120]
    with pytest.raises(ValueError, match="no network"):
        FlightConfig(depth="sgbm", weights=str(weights))
    with pytest.raises(ValueError, match="not found"):
        FlightConfig(depth="mono-radar", weights=str(tmp_path / "missing.safetensors"))


def _result(seed: int, success: bool, plan_ms, stage_ms) -> FlightResult:
    return FlightResult(config={"seed": seed}, success=success, collided=False, timed_out=not success,
                        time_s=10.0, path_length_m=20.0, mean_speed_m_s=2.0, min_clearance_m=0.5,
                        plan_ms=list(plan_ms), map_ms=[5.0, 7.0], depth_ms=[1.0], integrate_ms=[2.0, 3.0],
                        esdf_ms=[3.0, 4.0], plan_stage_ms={"check": list(stage_ms)},
                        end_reason="goal reached" if success else "timeout")


def test_summary_and_aggregate_report_stage_medians_and_failures():
    a, b = _result(1, True, [1.0, 2.0, 9.0], [0.5, 0.7, 0.9]), _result(2, False, [4.0], [0.1])
    s = a.summary()
    assert s["plan_ms_median"] == 2.0 and s["integrate_ms_median"] == 2.5 and s["esdf_ms_median"] == 3.5
    assert s["plan_check_ms_median"] == 0.7 and "plan_stage_ms" not in s and "plan_ms" not in s
    agg = aggregate([a, b])
    assert agg["plan_ms_median"] == 3.0  # pooled over every step of every trial
    assert agg["plan_check_ms_median"] == 0.6 and agg["esdf_ms_median"] == 3.5
    assert agg["success_rate"] == 0.5 and agg["failures"] == ["seed 2: timeout"]
