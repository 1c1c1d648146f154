"""The compiled planner kernels agree with plain numpy formulations of the same definitions."""
from __future__ import annotations

import numpy as np
import pytest

from depth_nodes.camera import PinholeCamera
from depth_nodes.geometry import camera_pose_from_body, pose_from_xyz_yaw
from depth_nodes.planning import kernels
from depth_nodes.planning.collision import (DepthObstacleImage, UnknownPolicy, check_primitives, path_points,
                                            required_clearance)
from depth_nodes.planning.distance import AnalyticDistanceField
from depth_nodes.planning.planner import PlannerConfig, PrimitivePlanner
from depth_nodes.planning.primitives import (YAW_HOLD_SPEED, PrimitiveLibrary, PrimitiveLibraryConfig,
                                             quintic_basis, wrap_angle)
from depth_nodes.planning.state import DepthFrame, VehicleState

CAM = PinholeCamera.from_fov(64, 48, 90.0)
LIB = PrimitiveLibraryConfig(n_yaw=11, n_climb=3, speeds=(1.0, 2.5), horizon_s=1.5, v_max=3.0)


def random_states(seed: int, n: int):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        yaw = rng.uniform(-np.pi, np.pi)
        yield VehicleState(rng.uniform(-2, 2, 3) + [0, 0, 1.5], rng.normal(0, 1.5, 3) * [1, 1, 0.3],
                           rng.normal(0, 2.0, 3), yaw, stamp=0.0)


def reference_yaw(vel, yaw0, step):
    """The per-sample loop of the yaw definition, vectorised over primitives."""
    heading = np.arctan2(vel[..., 1], vel[..., 0])
    moving = np.hypot(vel[..., 0], vel[..., 1]) > YAW_HOLD_SPEED
    yaw = np.empty(vel.shape[:2])
    cur = np.full(vel.shape[0], yaw0)
    yaw[:, 0] = cur
    for s in range(1, vel.shape[1]):
        cur = cur + np.where(moving[:, s], np.clip(wrap_angle(heading[:, s] - cur), -step, step), 0.0)
        yaw[:, s] = cur
    error = np.where(moving, np.abs(wrap_angle(heading - yaw)), 0.0)
    return yaw, error


def test_generated_samples_are_the_quintics_within_the_limits_and_yaw_follows_motion():
    lib = PrimitiveLibrary(LIB)
    t = lib.t
    bases = quintic_basis(t, lib.T)
    for state in random_states(3, 20):
        prims = lib.generate(state, goal=state.pos + [2.0, 0.5, 0.0])
        fan = ~prims.is_brake
        # every kept primitive is the quintic through its boundary values
        p1 = prims.pos[fan, -1]
        bound = np.stack([np.broadcast_to(state.pos, p1.shape), np.broadcast_to(state.vel, p1.shape),
                          np.broadcast_to(state.acc, p1.shape), p1, prims.end_vel[fan], np.zeros_like(p1)], axis=1)
        for basis, got in zip(bases, (prims.pos, prims.vel, prims.acc)):
            np.testing.assert_allclose(np.einsum("sj,pjd->psd", basis, bound), got[fan], atol=1e-9)
        v_lim = max(LIB.v_max, np.linalg.norm(state.vel)) + 1e-6
        a_lim = max(LIB.a_max, np.linalg.norm(state.acc)) + 1e-6
        assert np.all(np.linalg.norm(prims.vel[fan], axis=2) <= v_lim)
        assert np.all(np.linalg.norm(prims.acc[fan], axis=2) <= a_lim)
        r = prims.report
        assert r["n_fan"] + r["n_goal"] - r["n_discarded_velocity"] - r["n_discarded_acceleration"] == fan.sum()
        yaw, error = reference_yaw(prims.vel, float(wrap_angle(state.yaw)),
                                   np.radians(LIB.yaw_rate_max_deg_s) * LIB.dt)
        np.testing.assert_allclose(prims.yaw, yaw, atol=1e-9)
        np.testing.assert_allclose(prims.heading_error, error, atol=1e-9)
        # the brakes come to rest within their deceleration limit and then hold
        brakes = np.flatnonzero(prims.is_brake)
        assert brakes.size == len(LIB.brake_fractions)
        for b, frac in zip(brakes, LIB.brake_fractions):
            lim = max(frac * LIB.a_max, np.linalg.norm(state.acc)) + 1e-9
            assert np.linalg.norm(prims.acc[b], axis=1).max() <= lim * 1.05
            after = t >= prims.stop_time[b]
            assert np.all(prims.vel[b, after] == 0.0)


def test_discarded_primitives_are_exactly_those_over_the_limits():
    # fast sideways motion: many fan primitives need more than a_max to turn
    state = VehicleState([0, 0, 1.5], [2.9, 0.0, 0.0], [0.0, 3.0, 0.0], yaw=0.0)
    lib = PrimitiveLibrary(LIB)
    prims = lib.generate(state)
    r = prims.report
    assert r["n_discarded_acceleration"] > 0 and r["n_primitives"] < r["n_fan"] + r["n_brake"]
    samples = np.random.default_rng(0).normal(0, 2.0, (40, 3, 3, 7))
    pos, vel, acc, v_bad, a_bad = kernels.select_fan(samples, 9.0, 16.0, 2)
    v_ref = (samples[:, :, 1] ** 2).sum(axis=1).max(axis=1) > 9.0
    a_ref = (samples[:, :, 2] ** 2).sum(axis=1).max(axis=1) > 16.0
    np.testing.assert_array_equal(v_bad, v_ref)
    np.testing.assert_array_equal(a_bad, a_ref)
    keep = ~(v_ref | a_ref)
    assert pos.shape == (keep.sum() + 2, 7, 3)
    np.testing.assert_array_equal(vel[:keep.sum()], samples[keep, :, 1].transpose(0, 2, 1))


def test_path_bounds_and_required_clearance_match_numpy():
    planner = PrimitivePlanner(PlannerConfig(library=LIB, require_depth=False))
    for state in random_states(5, 5):
        lo, hi = planner.path_bounds(state, pad=0.25)
        path = path_points(planner.candidates(state))
        np.testing.assert_array_equal(lo, path.min(axis=(0, 1)) - 0.25)
        np.testing.assert_array_equal(hi, path.max(axis=(0, 1)) + 0.25)
        step = np.linalg.norm(np.diff(path, axis=1), axis=2).max(axis=1)
        np.testing.assert_allclose(required_clearance(planner.candidates(state), 0.3, 0.1), 0.4 + 0.5 * step)


def reference_depth_query(image: DepthObstacleImage, points):
    p = np.asarray(points, dtype=np.float64)
    pc = p @ image.T_cam_world[:3, :3].T + image.T_cam_world[:3, 3]
    uv, z = image.camera.project(pc)
    inside = image.camera.in_image(uv, z)
    u = np.where(inside, np.rint(uv[:, 0]), 0).astype(np.int64) // image.pool
    v = np.where(inside, np.rint(uv[:, 1]), 0).astype(np.int64) // image.pool
    lvl = np.clip(np.searchsorted(image.edges, np.where(inside, z, 0.0), side="right") - 1, 0, len(image.edges) - 1)
    observed = image.eroded[lvl, v, u]
    known = inside & (~image.invalid[v, u] | (z <= image.no_return_free_m))
    return np.where(inside & np.isfinite(observed), observed - z, np.nan), known


@pytest.mark.parametrize("pool, free", [(1, 0.0), (2, 3.0), (3, 0.0)])
def test_depth_image_query_matches_the_projection_definition(pool, free):
    rng = np.random.default_rng(pool)
    world = AnalyticDistanceField(cylinders=[[4.0, 0.5, 0.4, 0.0, 5.0], [6.0, -2.0, 0.6, 0.0, 5.0]], ground=True)
    T = camera_pose_from_body(pose_from_xyz_yaw([0.0, 0.0, 1.5], 0.1))
    depth = world.render_depth(CAM, T, max_range=8.0)
    depth[:, :5] = np.nan
    image = DepthObstacleImage(DepthFrame(depth, CAM, T), 0.4, free, pool)
    # points ahead, behind, beside and exactly on pixel-rounding boundaries
    pts = np.concatenate([rng.uniform([-3, -8, -1], [12, 8, 4], (3000, 3)), [[0.0, 0.0, 1.5], [1.0, 1.0, 1.5]]])
    gap, known = image.query(pts)
    ref_gap, ref_known = reference_depth_query(image, pts)
    np.testing.assert_array_equal(known, ref_known)
    np.testing.assert_array_equal(np.isnan(gap), np.isnan(ref_gap))
    np.testing.assert_allclose(gap[~np.isnan(gap)], ref_gap[~np.isnan(gap)], atol=1e-9)
    assert known.any() and (~known).any() and (gap < 0).any()


def reference_check(prims, required, sources, policy, free_dist, min_alt, max_alt):
    path = path_points(prims)
    P, S = path.shape[:2]
    pts = path.reshape(-1, 3)
    blocked, known, clearance = np.zeros(P * S, bool), np.zeros(P * S, bool), np.full(P * S, np.inf)
    with np.errstate(invalid="ignore"):
        for src in sources:
            d, k = src.query(pts)
            d = np.asarray(d, np.float64)
            # a start inside the required clearance lowers it to the start's distance
            d0 = d.reshape(P, S)[:, 0]
            blocked |= d < np.repeat(np.where(d0 < required, d0, required), S)
            known |= k
            clearance = np.fmin(clearance, d)
    blocked, unknown, z = blocked.reshape(P, S), ~known.reshape(P, S), path[..., 2]
    if min_alt is not None:
        blocked |= (z < min_alt) & (z < path[:, :1, 2] - 1e-6)
    if max_alt is not None:
        blocked |= (z > max_alt) & (z > path[:, :1, 2] + 1e-6)
    if policy is UnknownPolicy.FORBID:
        blocked |= unknown & (np.linalg.norm(path - path[:, :1], axis=2) > free_dist)
    blocked[:, 0] = False
    return blocked, unknown, clearance.reshape(P, S)[:, 1:].min(axis=1), unknown[:, 1:].mean(axis=1)


@pytest.mark.parametrize("policy", list(UnknownPolicy))
@pytest.mark.parametrize("alts", [(None, None), (1.2, 2.0)])
def test_collision_check_matches_the_pointwise_definition(policy, alts):
    world = AnalyticDistanceField(cylinders=[[3.0, 0.3, 0.4, 0.0, 5.0], [4.0, -1.5, 0.5, 0.0, 5.0]], ground=True,
                                  known_box=([-1.0, -3.0, 0.0], [3.5, 3.0, 3.0]))
    T = camera_pose_from_body(pose_from_xyz_yaw([0.0, 0.0, 1.5], 0.0))
    image = DepthObstacleImage(DepthFrame(world.render_depth(CAM, T, max_range=6.0), CAM, T), 0.35, 0.0, 2)
    lib = PrimitiveLibrary(LIB)
    # the second start is 0.3 m from a trunk, inside the clearance it needs
    for state, start in zip(random_states(11, 6), [[0.0, 0.0, 1.5]] * 4 + [[2.3, 0.3, 1.5]] * 2):
        state = VehicleState(start, state.vel, state.acc, state.yaw)
        prims = lib.generate(state)
        req = required_clearance(prims, 0.25, 0.1)
        for sources in ((world,), (image,), (world, image), ()):
            kw = dict(distance_field=world if world in sources else None,
                      depth_image=image if image in sources else None)
            res = check_primitives(prims, req, policy=policy, unknown_free_dist=0.5, min_altitude=alts[0],
                                   max_altitude=alts[1], **kw)
            blocked, unknown, clearance, fraction = reference_check(prims, req, sources, policy, 0.5, *alts)
            np.testing.assert_array_equal(res.blocked, blocked)
            np.testing.assert_array_equal(res.unknown, unknown)
            np.testing.assert_array_equal(res.feasible, ~blocked.any(axis=1))
            np.testing.assert_array_equal(res.first_collision, np.where(blocked.any(axis=1),
                                                                        np.argmax(blocked, axis=1), -1))
            np.testing.assert_allclose(res.min_clearance, clearance)
            np.testing.assert_allclose(res.unknown_fraction, fraction)
    assert not res.feasible.all() or policy is not UnknownPolicy.FORBID


def test_planning_uses_only_the_signatures_the_planner_compiles_up_front():
    # a cycle that needs a kernel signature the warm-up did not compile would stall for seconds
    planner = PrimitivePlanner(PlannerConfig(library=LIB))
    names = ("select_fan", "brake_duration", "brake_coefficients", "follow_yaw", "path_extent", "project_depth",
             "combine_checks")
    before = {n: len(getattr(kernels, n).signatures) for n in names}
    world = AnalyticDistanceField(cylinders=[[4.0, 0.5, 0.4, 0.0, 5.0]], ground=True)
    grid = world.to_grid([-1.0, -5.0, 0.0], (60, 100, 40), 0.1)
    T = camera_pose_from_body(pose_from_xyz_yaw([0.0, 0.0, 1.5], 0.0))
    frame = DepthFrame(world.render_depth(CAM, T), CAM, T)
    for state in random_states(2, 3):
        state = VehicleState([0.0, 0.0, 1.5], state.vel, state.acc, state.yaw)
        res = planner.plan(state, 0.0, [8.0, 0.0, 1.5], grid, frame)
        assert res.collision.feasible.shape == (len(res.candidates),)
    assert all(before[n] >= 1 for n in names)
    assert {n: len(getattr(kernels, n).signatures) for n in names} == before


def test_a_vehicle_inside_its_margin_may_leave_but_not_go_deeper():
    """0.3 m from a trunk with 0.35 m required: moving away is feasible, closing in is not."""
    world = AnalyticDistanceField(cylinders=[[3.0, 0.0, 0.4, 0.0, 5.0]], ground=True)
    start = np.array([2.3, 0.0, 1.5])
    d_start = float(world.query(start[None])[0][0])
    assert 0.29 < d_start < 0.31
    # facing +y, the fan reaches from +x (the trunk) to -x (away)
    prims = PrimitiveLibrary(LIB).generate(VehicleState(start, [0.0, 0.0, 0.0], [0.0, 0.0, 0.0], np.pi / 2))
    req = required_clearance(prims, 0.25, 0.1)
    assert np.all(req > d_start)
    res = check_primitives(prims, req, distance_field=world, policy=UnknownPolicy.OPTIMISTIC)
    moving = ~prims.is_brake
    assert res.feasible[moving].any()
    path = path_points(prims)
    d = world.query(path.reshape(-1, 3))[0].reshape(path.shape[:2])
    # every feasible primitive keeps at least the start's distance; toward the trunk is blocked
    assert np.all(d[res.feasible][:, 1:] >= d_start)
    toward = moving & (prims.end_vel[:, 0] > 0.5) & (np.abs(prims.end_vel[:, 1]) < 0.1)
    assert toward.any() and not res.feasible[toward].any()
    # away from the trunk (-x) is open
    away = moving & (prims.end_vel[:, 0] < -0.5)
    assert res.feasible[away].any()
