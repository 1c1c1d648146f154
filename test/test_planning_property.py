"""Property test of the planner on random voxel maps and states (hypothesis).

The safety claim is checked independently of the planner's own checker: a
brute-force distance from densified trajectory points to every occupied voxel
centre.
"""
from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from depth_nodes.planning.distance import VoxelDistanceField
from depth_nodes.planning.planner import PlannerConfig, PlanStatus, PrimitivePlanner
from depth_nodes.planning.primitives import PrimitiveLibraryConfig
from depth_nodes.planning.state import VehicleState

VOXEL = 0.25
SHAPE = (20, 20, 10)
ORIGIN = np.array([-2.5, -2.5, 0.0])
START_CLEAR = 0.6  # no occupied voxel centre within this distance of the start
LIBRARY = PrimitiveLibraryConfig(n_yaw=7, n_climb=3, speeds=(0.5, 1.5), horizon_s=1.0, dt=0.1,
                                 v_max=2.5, a_max=5.0)
PLANNERS = {}


def planner_for(policy: str, require_depth: bool) -> PrimitivePlanner:
    key = (policy, require_depth)
    if key not in PLANNERS:
        PLANNERS[key] = PrimitivePlanner(PlannerConfig(library=LIBRARY, unknown_policy=policy,
                                                       require_depth=require_depth))
    PLANNERS[key].reset()
    return PLANNERS[key]


def random_map(rng: np.random.Generator, density: float, start: np.ndarray):
    occ = rng.random(SHAPE) < density
    for _ in range(rng.integers(0, 5)):  # a few solid boxes
        lo = rng.integers(0, np.array(SHAPE) - 2)
        hi = lo + rng.integers(1, 5, size=3)
        occ[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = True
    idx = np.stack(np.meshgrid(*(np.arange(s) for s in SHAPE), indexing="ij"), axis=-1)
    centres = ORIGIN + (idx + 0.5) * VOXEL
    occ &= np.linalg.norm(centres - start, axis=-1) >= START_CLEAR
    known = np.ones(SHAPE, dtype=bool)
    if rng.random() < 0.5:  # an unobserved box
        lo = rng.integers(0, np.array(SHAPE) - 4)
        hi = lo + rng.integers(2, 12, size=3)
        known[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = False
    return occ, known, centres[occ]


def min_distance_to(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(P,) brute-force minimum distance of each primitive's points (P, N, 3) to the centres."""
    if centres.size == 0 or points.shape[0] == 0:
        return np.full(points.shape[0], np.inf)
    d2 = ((points[:, :, None, :] - centres[None, None, :, :]) ** 2).sum(axis=-1)
    return np.sqrt(d2.min(axis=(1, 2)))


def densify(pos: np.ndarray, k: int = 4) -> np.ndarray:
    """(P, S, 3) samples -> (P, (S-1) k + 1, 3) points on the straight segments between them."""
    a = np.linspace(0.0, 1.0, k, endpoint=False)[None, None, :, None]
    seg = pos[:, :-1, None, :] * (1 - a) + pos[:, 1:, None, :] * a
    return np.concatenate([seg.reshape(pos.shape[0], (pos.shape[1] - 1) * k, 3), pos[:, -1:]], axis=1)


@settings(max_examples=500, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1),
       density=st.sampled_from([0.0, 0.002, 0.005, 0.01, 0.05]),
       speed=st.floats(0.0, 2.0), heading=st.floats(-np.pi, np.pi), vz=st.floats(-0.5, 0.5),
       yaw_err=st.floats(-0.5, 0.5),
       policy=st.sampled_from(["forbid", "penalty", "optimistic"]),
       use_goal=st.booleans(), odom_age=st.floats(0.0, 0.19), stale_age=st.floats(0.21, 5.0))
def test_chosen_primitive_keeps_clear_of_known_obstacles(seed, density, speed, heading, vz, yaw_err, policy,
                                                         use_goal, odom_age, stale_age):
    rng = np.random.default_rng(seed)
    start = np.array([rng.uniform(-1.0, 1.0), rng.uniform(-1.0, 1.0), rng.uniform(0.8, 1.7)])
    occ, known, centres = random_map(rng, density, start)
    field = VoxelDistanceField(occ, ORIGIN, VOXEL, known=known)
    vel = np.array([speed * np.cos(heading), speed * np.sin(heading), vz])
    state = VehicleState(start, vel, rng.uniform(-1, 1, 3), heading + yaw_err, stamp=100.0)
    goal = rng.uniform([-2, -2, 0.5], [2, 2, 2]) if use_goal else None

    # stale or missing inputs always brake
    stale = planner_for(policy, require_depth=False).plan(state, 100.0 + stale_age, goal, field, None)
    assert stale.status is PlanStatus.STALE_ODOM and stale.braking
    no_depth = planner_for(policy, require_depth=True).plan(state, 100.0 + odom_age, goal, field, None)
    assert no_depth.status is PlanStatus.STALE_DEPTH and no_depth.braking

    planner = planner_for(policy, require_depth=False)
    cfg = planner.config
    result = planner.plan(state, 100.0 + odom_age, goal, field, None)
    prims, check = result.candidates, result.collision
    assert result.trajectory.pos.shape == (prims.n_samples, 3)
    np.testing.assert_allclose(result.trajectory.pos[0], start)

    # every primitive the checker calls feasible is clear of every known occupied voxel,
    # including the straight segments between samples (independent brute force)
    feas = np.flatnonzero(check.feasible)
    clear = min_distance_to(densify(prims.pos[feas]), centres)
    assert np.all(clear >= cfg.robot_radius + cfg.margin - 1e-6), clear.min()

    chosen = min_distance_to(densify(prims.pos[result.index][None]), centres)[0]
    if result.status is PlanStatus.GOAL_REACHED:
        assert result.braking and check.feasible[result.index]
        assert np.linalg.norm(start - goal) <= cfg.goal_tolerance
        assert chosen >= cfg.robot_radius
    elif not np.any(check.feasible & ~prims.is_brake):
        event("all motion primitives blocked")
        assert result.status is PlanStatus.NO_FEASIBLE and result.braking
    else:
        assert result.status is (PlanStatus.OK if use_goal else PlanStatus.NO_GOAL_EXPLORE)
        assert check.feasible[result.index]
        assert chosen >= cfg.robot_radius
