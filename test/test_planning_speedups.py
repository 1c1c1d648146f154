"""Planner latency features: auto stopping tails, path bounds for the map window,
pooled depth images, and NaN-as-free-space for range-limited sensors."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from depth_nodes.camera import PinholeCamera
from depth_nodes.eval.flight import ESDF_MAX_DISTANCE_M, FlightConfig, _planner_config
from depth_nodes.geometry import camera_pose_from_body, pose_from_xyz_yaw
from depth_nodes.planning.collision import (DepthObstacleImage, UnknownPolicy, check_primitives, path_points,
                                            required_clearance)
from depth_nodes.planning.distance import AnalyticDistanceField
from depth_nodes.planning.planner import PlannerConfig, PrimitivePlanner
from depth_nodes.planning.primitives import PrimitiveLibrary, PrimitiveLibraryConfig
from depth_nodes.planning.state import DepthFrame, VehicleState

CAM = PinholeCamera.from_fov(96, 72, 90.0)
START = np.array([0.0, 0.0, 1.5])
LIB = PrimitiveLibraryConfig(n_yaw=9, n_climb=3, speeds=(1.0, 3.0), horizon_s=2.0)


def frame_of(world: AnalyticDistanceField, pos=START, yaw=0.0, stamp=0.0) -> DepthFrame:
    T = camera_pose_from_body(pose_from_xyz_yaw(pos, yaw))
    return DepthFrame(world.render_depth(CAM, T), CAM, T, stamp)


@pytest.mark.parametrize("v_max", [1.0, 3.5, 6.6, 7.7])
def test_auto_tail_is_no_coarser_than_a_full_speed_step(v_max):
    cfg = PrimitiveLibraryConfig(speeds=(v_max / 1.1,), v_max=v_max, horizon_s=1.0, n_yaw=5, n_climb=1)
    prims = PrimitiveLibrary(cfg).generate(VehicleState(START, [v_max / 1.1, 0, 0], [0, 0, 0]))
    tail_steps = np.linalg.norm(np.diff(np.concatenate([prims.pos[:, -1:], prims.tail], axis=1), axis=1), axis=2)
    assert cfg.n_tail >= 1 and prims.tail.shape[1] == cfg.n_tail
    assert tail_steps.max() <= v_max * cfg.dt + 1e-9
    assert PrimitiveLibraryConfig(n_tail=3).n_tail == 3  # an explicit count is kept


@pytest.mark.parametrize("speed", [3.0, 5.0, 6.0, 7.0])
def test_flight_primitives_need_less_clearance_than_the_esdf_resolves(speed):
    # a coarse stopping tail once made every fast primitive need more clearance than the
    # ESDF's saturation distance, so they were all blocked
    pcfg = _planner_config(FlightConfig(speed=speed))
    prims = PrimitiveLibrary(pcfg.library).generate(VehicleState(START, [speed, 0, 0], [0, 0, 0]))
    req = required_clearance(prims, pcfg.robot_radius, pcfg.margin)
    fastest = ~prims.is_brake & (prims.speed == max(pcfg.library.speeds))
    assert fastest.any() and req.max() < ESDF_MAX_DISTANCE_M


def test_path_bounds_cover_every_path_point_and_are_reused_by_plan():
    planner = PrimitivePlanner(PlannerConfig(library=LIB, require_depth=False))
    state = VehicleState(START, [2.0, 0.5, 0.0], [0.0, 0.0, 0.0], 0.2, stamp=1.0)
    goal = np.array([12.0, 3.0, 1.5])
    lo, hi = planner.path_bounds(state, goal, pad=0.5)
    pts = path_points(planner.candidates(state, goal)).reshape(-1, 3)
    assert np.all(pts >= lo + 0.5 - 1e-9) and np.all(pts <= hi - 0.5 + 1e-9)
    assert np.allclose(pts.min(axis=0), lo + 0.5) and np.allclose(pts.max(axis=0), hi - 0.5)
    world = AnalyticDistanceField(cylinders=[[4.0, 0.5, 0.4, 0.0, 5.0]], ground=True)
    res = planner.plan(state, 1.0, goal, world)
    assert res.candidates is planner.candidates(state, goal)  # generated once
    assert res.timings_ms["total"] >= res.timings_ms["generate"] > 0
    fresh = PrimitivePlanner(PlannerConfig(library=LIB, require_depth=False)).plan(state, 1.0, goal, world)
    assert fresh.index == res.index and fresh.status == res.status
    # another state object or goal generates anew
    other = VehicleState(START + 1.0, state.vel, state.acc, state.yaw, stamp=1.0)
    assert planner.candidates(other, goal) is not res.candidates
    assert planner.candidates(state, goal + 1.0) is not res.candidates
    with pytest.raises(ValueError, match="pad"):
        planner.path_bounds(state, goal, pad=-1.0)
    with pytest.raises(ValueError, match="goal"):
        planner.path_bounds(state, [1.0, np.nan, 0.0])


def test_pooled_depth_image_is_the_erosion_of_the_min_pooled_image():
    rng = np.random.default_rng(7)
    depth = rng.uniform(0.3, 8.0, (72, 96)).astype(np.float32)
    depth[rng.random(depth.shape) < 0.3] = np.nan
    depth[:10, :10] = np.nan  # a whole tile of no returns stays invalid
    frame = DepthFrame(depth, CAM, np.eye(4))
    image = DepthObstacleImage(frame, 0.4, pool=3)
    filled = np.where(np.isnan(depth), np.inf, depth)
    pooled = filled.reshape(24, 3, 32, 3).min(axis=(1, 3))
    np.testing.assert_array_equal(image.invalid, np.isinf(pooled))
    assert image.invalid[0, 0] and image.invalid.mean() < 0.1
    f = CAM.fx / 3
    for level, z_lo in enumerate(image.edges):
        half = 32 if z_lo <= 0 else min(32, int(np.ceil(f * 0.4 / z_lo)))
        ref = ndimage.minimum_filter(pooled, size=2 * half + 1, mode="constant", cval=np.inf)
        np.testing.assert_array_equal(image.eroded[level], ref)


@pytest.mark.parametrize("pool", [2, 5, 7])
def test_min_pool_pads_partial_tiles_with_no_return(pool):
    rng = np.random.default_rng(pool)
    depth = rng.uniform(0.3, 8.0, (72, 96)).astype(np.float32)
    depth[rng.random(depth.shape) < 0.5] = np.nan
    invalid = DepthObstacleImage(DepthFrame(depth, CAM, np.eye(4)), 0.4, pool=pool).invalid
    h, w = -(-72 // pool), -(-96 // pool)
    padded = np.full((h * pool, w * pool), np.inf)
    padded[:72, :96] = np.where(np.isnan(depth), np.inf, depth)
    ref = padded.reshape(h, pool, w, pool).min(axis=(1, 3))
    np.testing.assert_array_equal(invalid, np.isinf(ref))
    assert invalid.shape == (h, w)


def test_pooling_only_brings_surfaces_closer():
    rng = np.random.default_rng(8)
    world = AnalyticDistanceField(cylinders=np.column_stack([rng.uniform(2, 9, 12), rng.uniform(-4, 4, 12),
                                                             rng.uniform(0.1, 0.4, 12), np.zeros(12),
                                                             np.full(12, 4.0)]), ground=True)
    frame = frame_of(world)
    fine = DepthObstacleImage(frame, 0.35)
    points = START + rng.uniform([0.2, -4, -1.2], [10, 4, 1.5], (4000, 3))
    g1, k1 = fine.query(points)
    for pool in (2, 4):
        gp, kp = DepthObstacleImage(frame, 0.35, pool=pool).query(points)
        both = np.isfinite(g1) & np.isfinite(gp)
        assert both.sum() > 1000
        assert np.all(gp[both] <= g1[both] + 1e-6)  # the pooled gap is never larger: conservative
        assert np.all(kp[k1])  # whatever the full image saw, the pooled one saw too
    with pytest.raises(ValueError, match="pool"):
        DepthObstacleImage(frame, 0.35, pool=0)


def test_no_returns_count_as_free_space_up_to_the_configured_range():
    empty = frame_of(AnalyticDistanceField(cylinders=[[300.0, 0.0, 0.3, 0.0, 5.0]]))
    assert np.isnan(empty.depth).all()
    lib = PrimitiveLibrary(LIB)
    prims = lib.generate(VehicleState.at_rest(START))
    req = required_clearance(prims, 0.25, 0.1)
    ahead = int(np.flatnonzero(~prims.is_brake & (np.abs(prims.yaw_offset) < 1e-9) & (prims.speed == 3.0)
                               & (prims.climb_rate == 0.0))[0])
    unseen = check_primitives(prims, req, depth_image=DepthObstacleImage(empty, 0.35), policy=UnknownPolicy.FORBID)
    assert not unseen.feasible[ahead] and unseen.unknown_fraction[ahead] > 0.5
    free = check_primitives(prims, req, depth_image=DepthObstacleImage(empty, 0.35, no_return_free_m=10.0),
                            policy=UnknownPolicy.FORBID)
    assert free.feasible[ahead] and free.unknown_fraction[ahead] == 0.0
    short = check_primitives(prims, req, depth_image=DepthObstacleImage(empty, 0.35, no_return_free_m=1.0),
                             policy=UnknownPolicy.FORBID)
    assert not short.feasible[ahead]  # samples beyond 1 m are still unknown
    with pytest.raises(ValueError, match="no_return_free_m"):
        DepthObstacleImage(empty, 0.35, no_return_free_m=-1.0)


@pytest.mark.parametrize("kw,match", [(dict(depth_pool=0), "depth_pool"), (dict(depth_pool=2.5), "depth_pool"),
                                      (dict(no_return_free_m=-0.1), "no_return_free_m"),
                                      (dict(no_return_free_m=np.inf), "no_return_free_m")])
def test_planner_config_rejects_bad_new_fields(kw, match):
    with pytest.raises(ValueError, match=match):
        PlannerConfig(**kw)


def test_max_altitude_blocks_climbs_above_the_ceiling_but_not_descents_from_above_it():
    lib = PrimitiveLibrary(PrimitiveLibraryConfig(n_yaw=5, n_climb=3, speeds=(1.0, 2.0), horizon_s=2.0))
    open_field = AnalyticDistanceField(ground=True)
    prims = lib.generate(VehicleState.at_rest(START))
    req = required_clearance(prims, 0.25, 0.1)
    res = check_primitives(prims, req, distance_field=open_field, max_altitude=START[2] + 0.3)
    top = prims.pos[..., 2].max(axis=1)
    assert np.all(res.feasible[top > START[2] + 0.3 + 1e-6] == False)  # noqa: E712
    free = check_primitives(prims, req, distance_field=open_field)
    level = ~prims.is_brake & (prims.climb_rate <= 0)
    np.testing.assert_array_equal(res.feasible[level], free.feasible[level])
    assert free.feasible[level & (prims.climb_rate == 0)].all()
    above = lib.generate(VehicleState.at_rest(START + [0, 0, 1.0]))  # already above the ceiling: may descend
    req = required_clearance(above, 0.25, 0.1)
    res = check_primitives(above, req, distance_field=open_field, max_altitude=START[2])
    down = ~above.is_brake & (above.climb_rate < 0)
    unlimited = check_primitives(above, req, distance_field=open_field)
    np.testing.assert_array_equal(res.feasible[down], unlimited.feasible[down])
    assert res.feasible[down].any() and not res.feasible[~above.is_brake & (above.climb_rate > 0)].any()
    with pytest.raises(ValueError, match="max_altitude"):
        PlannerConfig(max_altitude=0.1)  # not above min_altitude
    with pytest.raises(ValueError, match="max_altitude"):
        PlannerConfig(max_altitude=np.nan)
