"""Primitive library: continuity with the current state, limits, end conditions, brakes."""
from __future__ import annotations

import numpy as np
import pytest

from depth_nodes.planning.primitives import (PrimitiveLibrary, PrimitiveLibraryConfig, free_end_position,
                                             quintic_basis)
from depth_nodes.planning.state import VehicleState


def random_state(rng, speed_max=3.0, acc_max=2.0) -> VehicleState:
    v = rng.normal(size=3)
    v *= rng.uniform(0, speed_max) / np.linalg.norm(v)
    a = rng.normal(size=3)
    a *= rng.uniform(0, acc_max) / np.linalg.norm(a)
    return VehicleState(rng.uniform(-5, 5, 3), v, a, rng.uniform(-np.pi, np.pi), stamp=1.0)


def test_default_library_has_500_primitives_of_20_samples():
    lib = PrimitiveLibrary()
    prims = lib.generate(VehicleState.at_rest([0, 0, 1]))
    assert len(prims) >= 500 and prims.n_samples >= 20
    assert prims.pos.shape == (len(prims), prims.n_samples, 3)
    assert prims.vel.shape == prims.acc.shape == prims.pos.shape
    assert prims.yaw.shape == (len(prims), prims.n_samples)
    assert prims.t[0] == 0.0 and np.all(np.diff(prims.t) > 0)
    assert prims.is_brake.sum() == 2


@pytest.mark.parametrize("seed", range(10))
def test_primitives_start_at_the_state_and_respect_limits(seed):
    rng = np.random.default_rng(seed)
    cfg = PrimitiveLibraryConfig(v_max=3.0, a_max=3.0)
    state = random_state(rng, speed_max=2.9, acc_max=2.9)
    prims = PrimitiveLibrary(cfg).generate(state)
    np.testing.assert_allclose(prims.pos[:, 0], np.broadcast_to(state.pos, (len(prims), 3)), atol=1e-9)
    np.testing.assert_allclose(prims.vel[:, 0], np.broadcast_to(state.vel, (len(prims), 3)), atol=1e-9)
    np.testing.assert_allclose(prims.acc[:, 0], np.broadcast_to(state.acc, (len(prims), 3)), atol=1e-9)
    np.testing.assert_allclose(prims.yaw[:, 0], state.yaw)
    assert np.linalg.norm(prims.vel, axis=2).max() <= cfg.v_max + 1e-6
    assert np.linalg.norm(prims.acc, axis=2).max() <= cfg.a_max + 1e-6
    r = prims.report
    n_generated = r["n_fan"] + r["n_goal"]
    assert n_generated - r["n_discarded_velocity"] - r["n_discarded_acceleration"] + r["n_brake"] == len(prims)


def test_limit_violators_are_discarded_and_reported():
    cfg = PrimitiveLibraryConfig(a_max=1.0, speeds=(0.5, 3.0), v_max=3.5)
    prims = PrimitiveLibrary(cfg).generate(VehicleState.at_rest([0, 0, 1]))
    # 0 -> 3 m/s in 2 s needs more than 1 m/s^2 (min-jerk peak 1.875 dv / T)
    assert prims.report["n_discarded_acceleration"] > 0
    assert not np.any(prims.speed == 3.0)
    assert np.linalg.norm(prims.acc, axis=2).max() <= 1.0 + 1e-6


def test_fan_end_conditions_and_derivatives_are_consistent():
    rng = np.random.default_rng(3)
    state = random_state(rng)
    lib = PrimitiveLibrary()
    prims = lib.generate(state)
    fan = ~prims.is_brake
    np.testing.assert_allclose(prims.vel[fan, -1], prims.end_vel[fan], atol=1e-9)
    np.testing.assert_allclose(prims.acc[fan, -1], 0.0, atol=1e-9)
    horiz = np.hypot(prims.end_vel[fan, 0], prims.end_vel[fan, 1])
    np.testing.assert_allclose(horiz, prims.speed[fan])
    np.testing.assert_allclose(prims.end_vel[fan, 2], prims.climb_rate[fan])
    # velocity is the derivative of position (finite differences at interior samples)
    dv = (prims.pos[:, 2:] - prims.pos[:, :-2]) / (2 * lib.config.dt)
    np.testing.assert_allclose(dv[fan], prims.vel[fan, 1:-1], atol=0.02)


def test_free_end_quintic_is_quartic_minimum_jerk():
    T = 1.7
    t = np.linspace(0, T, 50)
    p0, v0, a0, v1, a1 = 0.3, -1.0, 2.0, 1.5, 0.0
    p1 = free_end_position(p0, v0, a0, v1, a1, T)
    Bp, Bv, Ba = quintic_basis(t, T)
    b = np.array([p0, v0, a0, p1, v1, a1])
    pos, acc = Bp @ b, Ba @ b
    # the fifth-order coefficient vanishes: the third difference of acceleration is 0 for a quartic
    coeffs = np.polyfit(t, pos, 5)
    assert abs(coeffs[0]) < 1e-8
    assert acc[-1] == pytest.approx(a1, abs=1e-9) and (Bv @ b)[-1] == pytest.approx(v1)


@pytest.mark.parametrize("speed", [0.5, 2.0, 3.5])
def test_brake_stops_on_the_current_line_within_acceleration_limit(speed):
    cfg = PrimitiveLibraryConfig(a_max=3.0, v_max=4.0, horizon_s=3.0)
    d = np.array([0.6, -0.8, 0.0])
    state = VehicleState([1, 2, 1.5], speed * d, 0.5 * d, 0.3)
    prims = PrimitiveLibrary(cfg).generate(state)
    for i in np.flatnonzero(prims.is_brake):
        rel = prims.pos[i] - state.pos
        lateral = rel - np.outer(rel @ d, d)
        assert np.abs(lateral).max() < 1e-9
        assert np.all(np.diff(rel @ d) >= -1e-12)  # never reverses
        assert np.linalg.norm(prims.acc[i], axis=1).max() <= cfg.a_max + 1e-6
        np.testing.assert_allclose(prims.acc[i, 0], state.acc, atol=1e-9)
        if prims.stop_time[i] <= prims.t[-1]:
            np.testing.assert_allclose(prims.vel[i, -1], 0.0, atol=1e-12)
    hard, soft = np.flatnonzero(prims.is_brake)
    assert prims.stop_time[hard] < prims.stop_time[soft]
    assert prims.stop_time[hard] < cfg.horizon_s
    # min-jerk braking needs about 1.5 v / a_max
    assert prims.stop_time[hard] == pytest.approx(1.5 * speed / cfg.a_max, rel=0.35)


def test_brake_at_rest_holds_position():
    prims = PrimitiveLibrary().generate(VehicleState.at_rest([1, 2, 3], yaw=0.4))
    for i in np.flatnonzero(prims.is_brake):
        np.testing.assert_allclose(prims.pos[i], np.broadcast_to([1, 2, 3], prims.pos[i].shape))
        np.testing.assert_allclose(prims.yaw[i], 0.4)


def test_yaw_follows_velocity_with_rate_limit():
    cfg = PrimitiveLibraryConfig(yaw_rate_max_deg_s=90.0)
    prims = PrimitiveLibrary(cfg).generate(VehicleState([0, 0, 1], [1.0, 0, 0], [0, 0, 0], 0.0))
    rate = np.abs(np.diff(np.unwrap(prims.yaw, axis=1), axis=1)) / cfg.dt
    assert rate.max() <= np.radians(90.0) + 1e-9
    fan = ~prims.is_brake
    heading = np.arctan2(prims.vel[fan, -1, 1], prims.vel[fan, -1, 0])
    err = np.abs(np.angle(np.exp(1j * (prims.yaw[fan, -1] - heading))))
    assert np.median(err) < np.radians(10)


@pytest.mark.parametrize("kwargs, field", [
    ({"n_yaw": 0}, "n_yaw"), ({"dt": -0.1}, "dt"), ({"speeds": ()}, "speeds"),
    ({"speeds": (1.0, float("nan"))}, "speeds"), ({"a_max": 0.0}, "a_max"),
    ({"brake_fractions": (1.5,)}, "brake_fractions"), ({"dt": 5.0}, "dt"),
])
def test_config_rejects_bad_values(kwargs, field):
    with pytest.raises(ValueError, match=field):
        PrimitiveLibraryConfig(**kwargs)


def test_state_rejects_non_finite_values():
    with pytest.raises(ValueError, match="state.vel"):
        VehicleState([0, 0, 1], [np.nan, 0, 0], [0, 0, 0])
    with pytest.raises(ValueError, match="state.pos"):
        VehicleState([0, 0], [0, 0, 0], [0, 0, 0])


def test_goal_primitive_comes_to_rest_at_a_reachable_goal_only():
    lib = PrimitiveLibrary()
    state = VehicleState([0, 0, 1], [0.5, 0.2, 0], [0, 0, 0], 0.1)
    goal = np.array([1.5, -0.5, 1.4])
    prims = lib.generate(state, goal)
    (i,) = np.flatnonzero(prims.is_goal)
    np.testing.assert_allclose(prims.pos[i, -1], goal, atol=1e-9)
    np.testing.assert_allclose(prims.vel[i, -1], 0.0, atol=1e-9)
    np.testing.assert_allclose(prims.pos[i, 0], state.pos)
    assert prims.report["n_goal"] == 1 and not prims.is_brake[i]
    far = lib.generate(state, np.array([50.0, 0.0, 1.0]))
    assert not far.is_goal.any() and len(far) == len(prims) - 1


def test_stopping_tail_follows_the_end_velocity_to_rest():
    cfg = PrimitiveLibraryConfig(a_max=4.0, n_tail=4)
    prims = PrimitiveLibrary(cfg).generate(VehicleState([0, 0, 1], [1.0, 0, 0], [0, 0, 0], 0.0))
    assert prims.tail.shape == (len(prims), 4, 3)
    u = np.linalg.norm(prims.vel[:, -1], axis=1)
    length = np.linalg.norm(prims.tail[:, -1] - prims.pos[:, -1], axis=1)
    np.testing.assert_allclose(length, 0.75 * u ** 2 / cfg.a_max, atol=1e-9)
    fan = ~prims.is_brake & (u > 0)
    step = prims.tail[fan, 0] - prims.pos[fan, -1]
    cos = (step * prims.vel[fan, -1]).sum(axis=1) / (np.linalg.norm(step, axis=1) * u[fan])
    np.testing.assert_allclose(cos, 1.0)
    stopped = prims.is_brake & (prims.stop_time <= prims.t[-1])
    np.testing.assert_allclose(prims.tail[stopped], np.repeat(prims.pos[stopped, -1:], 4, axis=1))
