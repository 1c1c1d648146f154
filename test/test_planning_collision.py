"""Distance fields and collision checking against a map and a depth image."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from depth_nodes.camera import PinholeCamera
from depth_nodes.geometry import camera_pose_from_body, pose_from_xyz_yaw
from depth_nodes.planning.collision import (DepthObstacleImage, UnknownPolicy, check_primitives,
                                            required_clearance)
from depth_nodes.planning.distance import (AnalyticDistanceField, DistanceField, GridDistanceField,
                                           VoxelDistanceField)
from depth_nodes.planning.primitives import PrimitiveLibrary, PrimitiveLibraryConfig
from depth_nodes.planning.state import DepthFrame, VehicleState

CAM = PinholeCamera.from_fov(96, 72, 90.0)
START = np.array([0.0, 0.0, 1.5])
LIB = PrimitiveLibrary(PrimitiveLibraryConfig(n_yaw=13, n_climb=1, speeds=(1.0, 3.0), horizon_s=2.0))


def frame_of(world: AnalyticDistanceField, pos=START, yaw=0.0, stamp=0.0) -> DepthFrame:
    T = camera_pose_from_body(pose_from_xyz_yaw(pos, yaw))
    return DepthFrame(world.render_depth(CAM, T), CAM, T, stamp)


def straight(prims, speed):
    """Index of the level, straight-ahead fan primitive with this end speed."""
    return int(np.flatnonzero(~prims.is_brake & (np.abs(prims.yaw_offset) < 1e-9) & (prims.speed == speed))[0])


def test_implementations_satisfy_the_protocol():
    grid = GridDistanceField(np.ones((2, 2, 2)), [0, 0, 0], 0.5)
    for f in (grid, VoxelDistanceField(np.zeros((2, 2, 2), bool), [0, 0, 0], 0.5), AnalyticDistanceField()):
        assert isinstance(f, DistanceField)
        d, k = f.query(np.zeros((4, 3)))
        assert d.dtype == np.float32 and k.dtype == bool and d.shape == k.shape == (4,)


def test_grid_lookup_is_nearest_voxel_and_outside_is_unknown():
    rng = np.random.default_rng(0)
    dist = rng.uniform(0, 3, (4, 5, 6)).astype(np.float32)
    known = rng.random((4, 5, 6)) < 0.7
    g = GridDistanceField(dist, [-1.0, 2.0, 0.5], 0.2, known=known)
    idx = np.stack(np.meshgrid(*(np.arange(s) for s in dist.shape), indexing="ij"), -1).reshape(-1, 3)
    jitter = rng.uniform(-0.099, 0.099, idx.shape)
    d, k = g.query(g.voxel_centres(idx) + jitter)
    np.testing.assert_array_equal(d, dist[tuple(idx.T)])
    np.testing.assert_array_equal(k, known[tuple(idx.T)])
    outside = np.array([[-1.01, 2.1, 0.6], [0.0, 3.01, 0.6], [-0.5, 2.5, 1.71], [np.nan, 2.5, 1.0],
                        [np.inf, 2.5, 1.0]])
    d, k = g.query(outside)
    assert np.all(np.isnan(d)) and not k.any()


def test_voxel_distance_is_a_lower_bound_on_distance_to_occupied_centres():
    rng = np.random.default_rng(1)
    occ = rng.random((12, 10, 8)) < 0.03
    f = VoxelDistanceField(occ, [0, 0, 0], 0.25)
    centres = f.voxel_centres(np.argwhere(occ))
    pts = rng.uniform([0, 0, 0], [3.0, 2.5, 2.0], (2000, 3))
    d, k = f.query(pts)
    truth = np.linalg.norm(pts[:, None] - centres[None], axis=2).min(axis=1)
    assert k.all()
    assert np.all(d <= truth + 1e-5)
    assert np.all(d >= truth - np.sqrt(3) * 0.25 - 1e-5)  # and not wildly conservative


def test_voxel_field_without_obstacles_is_infinitely_clear():
    f = VoxelDistanceField(np.zeros((3, 3, 3), bool), [0, 0, 0], 1.0, known=np.zeros((3, 3, 3), bool))
    d, k = f.query([[1.5, 1.5, 1.5]])
    assert np.isinf(d[0]) and not k[0]


@pytest.mark.parametrize("kwargs, msg", [
    ({"distance": np.ones((2, 2)), "origin": [0, 0, 0], "voxel_size": 0.1}, "3D"),
    ({"distance": np.ones((2, 2, 2)), "origin": [0, 0], "voxel_size": 0.1}, "origin"),
    ({"distance": np.ones((2, 2, 2)), "origin": [0, 0, 0], "voxel_size": -1.0}, "voxel_size"),
    ({"distance": np.full((2, 2, 2), np.nan), "origin": [0, 0, 0], "voxel_size": 0.1}, "NaN"),
    ({"distance": np.ones((2, 2, 2)), "origin": [0, 0, 0], "voxel_size": 0.1, "known": np.ones((3, 3, 3))},
     "known"),
])
def test_grid_rejects_bad_input(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        GridDistanceField(**kwargs)


def test_analytic_field_distances_and_grid_sampling():
    world = AnalyticDistanceField(spheres=[[2, 0, 1, 0.5]], cylinders=[[0, 3, 0.4, 0, 2]], ground=True)
    d, k = world.query([[2, 0, 2], [0, 3, 3], [0, 4, 1], [5, 5, 0.7], [2, 0, 1]])
    np.testing.assert_allclose(d, [0.5, 1.0, 0.6, 0.7, -0.5], atol=1e-6)
    assert k.all()
    grid = world.to_grid([-1, -1, 0], (40, 60, 30), 0.1)
    pts = np.random.default_rng(2).uniform([-1, -1, 0], [3, 5, 3], (3000, 3))
    gd, _ = grid.query(pts)
    exact = world.signed_distance(pts)
    assert np.all(gd <= exact + 1e-5) and np.all(gd >= exact - 0.18)


def test_rendered_depth_matches_geometry():
    world = AnalyticDistanceField(cylinders=[[4.0, 0.0, 0.5, 0.0, 5.0]])
    depth = frame_of(world).depth
    # centre pixel looks along body +x at the pole's near surface (3.5 m)
    assert depth[36, 48] == pytest.approx(3.5, abs=0.01)
    assert np.isnan(depth[36, 5])  # nothing to the side


def test_depth_obstacle_blocks_primitives_through_it():
    world = AnalyticDistanceField(cylinders=[[3.0, 0.0, 0.3, 0.0, 5.0]])
    frame = frame_of(world)
    prims = LIB.generate(VehicleState.at_rest(START))
    req = required_clearance(prims, 0.25, 0.1)
    image = DepthObstacleImage(frame, 0.5)
    res = check_primitives(prims, req, depth_image=image, policy=UnknownPolicy.OPTIMISTIC)
    fast, slow = straight(prims, 3.0), straight(prims, 1.0)
    assert not res.feasible[fast]  # ends at x = 3 m, through the pole at 2.7 m
    first = res.first_collision[fast]
    assert prims.pos[fast, first, 0] > 2.7 - req[fast] - 0.05
    assert np.all(prims.pos[fast, :first, 0] <= 2.7 - req[fast] + 0.05)
    assert res.feasible[slow]  # stops at 1 m
    # the same primitives pass when the depth image shows no obstacle
    empty = DepthObstacleImage(frame_of(AnalyticDistanceField(cylinders=[[30.0, 0.0, 0.3, 0.0, 5.0]])), 0.5)
    assert check_primitives(prims, req, depth_image=empty, policy=UnknownPolicy.OPTIMISTIC).feasible[fast]


@pytest.mark.parametrize("lateral, blocked", [(0.45, True), (1.2, False)])
def test_eroded_depth_accounts_for_the_body_width(lateral, blocked):
    # a thin pole beside the straight path: within the body radius it blocks, far to the side it does not
    world = AnalyticDistanceField(cylinders=[[2.5, lateral, 0.05, 0.0, 5.0]])
    prims = LIB.generate(VehicleState.at_rest(START))
    req = required_clearance(prims, 0.25, 0.1)
    res = check_primitives(prims, req, depth_image=DepthObstacleImage(frame_of(world), 0.5),
                           policy=UnknownPolicy.OPTIMISTIC)
    assert res.feasible[straight(prims, 3.0)] != blocked


def test_samples_outside_fov_or_behind_invalid_depth_are_unknown():
    world = AnalyticDistanceField(cylinders=[[30.0, 0.0, 0.3, 0.0, 5.0]])
    frame = frame_of(world)
    prims = LIB.generate(VehicleState.at_rest(START))
    req = required_clearance(prims, 0.25, 0.1)
    image = DepthObstacleImage(frame, 0.5)
    side = int(np.flatnonzero(~prims.is_brake & np.isclose(prims.yaw_offset, np.pi / 2) & (prims.speed == 3.0))[0])
    res = check_primitives(prims, req, depth_image=image, policy=UnknownPolicy.FORBID, unknown_free_dist=0.5)
    assert res.unknown[side, 1:].all()  # flying sideways out of a 90 deg FOV: never seen
    assert not res.feasible[side] and res.unknown_fraction[side] == 1.0
    opt = check_primitives(prims, req, depth_image=image, policy=UnknownPolicy.OPTIMISTIC)
    assert opt.feasible[side]
    pen = check_primitives(prims, req, depth_image=image, policy=UnknownPolicy.PENALTY)
    assert pen.feasible[side] and pen.unknown_fraction[side] == 1.0
    # straight ahead is seen, but only where the depth image is valid: everything is NaN (no return)
    fast = straight(prims, 3.0)
    assert np.isnan(frame.depth).all()
    assert res.unknown[fast, 1:].all()
    valid = DepthFrame(np.full_like(frame.depth, 20.0), CAM, frame.T_world_cam)
    seen = check_primitives(prims, req, depth_image=DepthObstacleImage(valid, 0.5), policy=UnknownPolicy.FORBID)
    assert seen.feasible[fast] and seen.unknown_fraction[fast] < 0.2


def test_incremental_erosion_equals_direct_minimum_filter():
    rng = np.random.default_rng(4)
    depth = rng.uniform(0.3, 6.0, (72, 96)).astype(np.float32)
    depth[rng.random(depth.shape) < 0.2] = np.nan
    image = DepthObstacleImage(DepthFrame(depth, CAM, np.eye(4)), 0.4)
    filled = np.where(np.isnan(depth), np.inf, depth)
    for level, z_lo in enumerate(image.edges):
        half = 96 if z_lo <= 0 else min(96, int(np.ceil(CAM.fx * 0.4 / z_lo)))
        ref = ndimage.minimum_filter(filled, size=2 * half + 1, mode="constant", cval=np.inf)
        np.testing.assert_array_equal(image.eroded[level], ref)


def test_map_blocks_and_unknown_policy_forbid_allows_near_start():
    occ = np.zeros((40, 40, 20), bool)
    occ[30, 15:25, :] = True  # wall at x ~ 3.0 across the path
    known = np.zeros_like(occ)
    known[:, 15:25, :] = True  # only a corridor straight ahead is observed
    field = VoxelDistanceField(occ, [0.0, -2.0, 0.0], 0.1, known=known)
    prims = LIB.generate(VehicleState.at_rest([0.0, 0.0, 1.0]))
    req = required_clearance(prims, 0.25, 0.1)
    res = check_primitives(prims, req, distance_field=field, policy=UnknownPolicy.FORBID, unknown_free_dist=0.5)
    assert not res.feasible[straight(prims, 3.0)] and res.feasible[straight(prims, 1.0)]
    assert np.isfinite(res.min_clearance[straight(prims, 1.0)])
    # leaving the observed corridor sideways is forbidden beyond 0.5 m, allowed when optimistic
    wide = np.abs(prims.yaw_offset) > 1.0
    assert not res.feasible[wide & (prims.speed == 3.0)].any()
    assert check_primitives(prims, req, distance_field=field,
                            policy=UnknownPolicy.OPTIMISTIC).feasible[wide & (prims.speed == 3.0)].all()


def test_start_sample_never_blocks_and_min_altitude_blocks_descent():
    field = AnalyticDistanceField(spheres=[[0.0, 0.0, 1.0, 0.2]])  # the vehicle sits in it
    prims = LIB.generate(VehicleState([3.0, 0.0, 1.0], [0, 0, -1.0], [0, 0, 0], 0.0))
    req = required_clearance(prims, 0.25, 0.1)
    res = check_primitives(prims, req, distance_field=field, min_altitude=0.5)
    assert not res.blocked[:, 0].any()
    below = (prims.pos[:, 1:, 2] < 0.5).any(axis=1)
    assert below.any() and not res.feasible[below].any()


def test_check_rejects_mismatched_clearance_and_bad_policy():
    prims = LIB.generate(VehicleState.at_rest(START))
    with pytest.raises(ValueError, match="required"):
        check_primitives(prims, np.ones(3))
    with pytest.raises(ValueError, match="unknown_policy"):
        UnknownPolicy.parse("yolo")


def test_a_primitive_that_cannot_stop_before_an_obstacle_is_infeasible():
    # from hover the fast straight primitive ends at x = 3 m doing 3 m/s: its stop reaches ~4.7 m
    lib = PrimitiveLibrary(PrimitiveLibraryConfig(n_yaw=13, n_climb=1, speeds=(1.0, 3.0), a_max=4.0))
    prims = lib.generate(VehicleState.at_rest(START))
    fast = straight(prims, 3.0)
    pole = AnalyticDistanceField(cylinders=[[4.3, 0.0, 0.1, 0.0, 5.0]])
    req = required_clearance(prims, 0.25, 0.1)
    assert pole.signed_distance(prims.pos[fast]).min() > req[fast]  # the flown samples are clear
    res = check_primitives(prims, req, distance_field=pole)
    assert not res.feasible[fast] and res.first_collision[fast] >= prims.n_samples
    assert res.feasible[straight(prims, 1.0)]
