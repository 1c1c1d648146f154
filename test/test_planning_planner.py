"""Planner: goal progress in closed loop, goal reached, stale inputs, braking, hysteresis, bad input."""
from __future__ import annotations

import numpy as np
import pytest

from depth_nodes.camera import PinholeCamera
from depth_nodes.geometry import camera_pose_from_body, pose_from_xyz_yaw
from depth_nodes.planning.collision import CollisionResult
from depth_nodes.planning.distance import AnalyticDistanceField, GridDistanceField
from depth_nodes.planning.planner import PlannerConfig, PlanStatus, PrimitivePlanner
from depth_nodes.planning.primitives import PrimitiveLibraryConfig
from depth_nodes.planning.selection import select
from depth_nodes.planning.state import DepthFrame, VehicleState
from depth_nodes.trajectory import Trajectory

CAM = PinholeCamera.from_fov(96, 72, 90.0)
LIB = PrimitiveLibraryConfig(n_yaw=13, n_climb=3, speeds=(0.5, 1.0, 2.0))
OPEN = AnalyticDistanceField(ground=True)  # free, fully known space above the ground


def frame_of(world, state: VehicleState, stamp: float) -> DepthFrame:
    T = camera_pose_from_body(pose_from_xyz_yaw(state.pos, state.yaw))
    return DepthFrame(world.render_depth(CAM, T, max_range=15.0), CAM, T, stamp)


def fly(planner, world, start: VehicleState, goal, cycles: int, period: float = 0.25):
    """Closed loop with perfect tracking: follow each plan for ``period`` seconds, then replan."""
    state, now, results, path = start, start.stamp, [], [start.pos]
    for _ in range(cycles):
        res = planner.plan(state, now, goal, world, frame_of(world, state, now))
        results.append(res)
        if res.status is PlanStatus.GOAL_REACHED:
            break
        pos, vel, acc, yaw = res.trajectory.sample(period)
        dense = np.array([res.trajectory.sample(t)[0] for t in np.linspace(0, period, 6)])
        path.extend(dense[1:])
        now += period
        state = VehicleState(pos, vel, acc, yaw, stamp=now)
    return results, np.array(path)


def test_flies_to_goal_in_free_space_and_reports_goal_reached():
    planner = PrimitivePlanner(PlannerConfig(library=LIB))
    start = VehicleState.at_rest([0.0, 0.0, 1.5], yaw=0.0, stamp=10.0)
    goal = np.array([6.0, 3.0, 2.0])
    results, path = fly(planner, OPEN, start, goal, cycles=80)
    assert results[0].status is PlanStatus.OK
    first = results[0]
    assert np.linalg.norm(first.trajectory.pos[-1] - goal) < np.linalg.norm(start.pos - goal) - 0.5
    assert results[-1].status is PlanStatus.GOAL_REACHED and results[-1].braking
    assert np.linalg.norm(path[-1] - goal) <= planner.config.goal_tolerance
    dist = np.linalg.norm(path - goal, axis=1)
    assert dist[-1] < 0.1 * dist[0]


def test_avoids_an_obstacle_on_the_way_to_the_goal():
    world = AnalyticDistanceField(cylinders=[[3.0, 0.0, 0.4, 0.0, 6.0]], spheres=[[3.0, 0.0, 3.5, 0.8]],
                                  ground=True)
    planner = PrimitivePlanner(PlannerConfig(library=LIB))
    start = VehicleState.at_rest([0.0, 0.0, 1.5], stamp=0.0)
    goal = np.array([6.0, 0.0, 1.5])
    results, path = fly(planner, world, start, goal, cycles=100)
    assert results[-1].status is PlanStatus.GOAL_REACHED
    assert world.signed_distance(path).min() >= planner.config.robot_radius
    # the stopping tail keeps every chosen primitive recoverable: never boxed in
    assert not any(r.status is PlanStatus.NO_FEASIBLE for r in results)


def test_explores_forward_without_a_goal():
    planner = PrimitivePlanner(PlannerConfig(library=LIB))
    state = VehicleState.at_rest([0.0, 0.0, 1.5], yaw=0.7, stamp=0.0)
    res = planner.plan(state, 0.0, None, OPEN, frame_of(OPEN, state, 0.0))
    assert res.status is PlanStatus.NO_GOAL_EXPLORE and not res.braking
    moved = res.trajectory.pos[-1] - state.pos
    assert moved @ np.array([np.cos(0.7), np.sin(0.7), 0.0]) > 1.0


@pytest.mark.parametrize("odom_age, depth_age, require_depth, status", [
    (0.25, 0.0, True, PlanStatus.STALE_ODOM),
    (-0.5, 0.0, True, PlanStatus.STALE_ODOM),   # from the future
    (0.0, 0.5, True, PlanStatus.STALE_DEPTH),
    (0.0, -0.5, True, PlanStatus.STALE_DEPTH),
    (0.0, None, True, PlanStatus.STALE_DEPTH),  # no depth frame at all
    (0.0, 0.5, False, PlanStatus.OK),           # map-only planning allowed
])
def test_stale_inputs_command_the_brake(odom_age, depth_age, require_depth, status):
    planner = PrimitivePlanner(PlannerConfig(library=LIB, require_depth=require_depth))
    now = 50.0
    state = VehicleState([0.0, 0.0, 1.5], [2.0, 0.0, 0.0], [0, 0, 0], 0.0, stamp=now - odom_age)
    frame = None if depth_age is None else frame_of(OPEN, state, now - depth_age)
    res = planner.plan(state, now, np.array([10.0, 0.0, 1.5]), OPEN, frame)
    assert res.status is status
    assert res.braking == (status is not PlanStatus.OK)
    if res.braking:
        assert res.reason and np.allclose(res.trajectory.vel[0], state.vel)
        assert np.linalg.norm(res.trajectory.vel[-1]) < 1e-9  # stops within the horizon


def test_everything_blocked_commands_the_brake_even_if_it_collides():
    wall = AnalyticDistanceField(spheres=[[31.2, 0.0, 1.5, 30.0]], ground=True)  # surface 1.2 m ahead
    planner = PrimitivePlanner(PlannerConfig(library=LIB))
    state = VehicleState([0.0, 0.0, 1.5], [3.0, 0.0, 0.0], [0, 0, 0], 0.0, stamp=0.0)
    res = planner.plan(state, 0.0, np.array([10.0, 0.0, 1.5]), wall, frame_of(wall, state, 0.0))
    assert not np.any(res.collision.feasible & ~res.candidates.is_brake)
    assert res.status is PlanStatus.NO_FEASIBLE and res.braking
    assert "blocked" in res.reason
    hard = np.flatnonzero(res.candidates.is_brake)[0]
    assert res.index == hard  # least collision-prone brake: the hardest stop


def test_plan_result_carries_candidates_costs_and_timings():
    planner = PrimitivePlanner(PlannerConfig(library=LIB))
    state = VehicleState.at_rest([0.0, 0.0, 1.5], stamp=3.0)
    res = planner.plan(state, 3.05, np.array([5.0, 0.0, 1.5]), OPEN, frame_of(OPEN, state, 3.0))
    P, S = len(res.candidates), res.candidates.n_samples
    K = LIB.n_tail
    assert isinstance(res.trajectory, Trajectory) and res.trajectory.stamp == 3.0
    assert res.trajectory.pos.shape == (S, 3) and res.candidates.tail.shape == (P, K, 3)
    assert res.collision.feasible.shape == (P,) and res.collision.blocked.shape == (P, S + K)
    for key in ("progress", "clearance", "smoothness", "fov", "unknown", "climb", "stop", "total"):
        assert res.costs[key].shape == (P,)
    assert res.index == int(np.argmin(np.where(res.collision.feasible, res.costs["total"], np.inf)))
    assert set(res.timings_ms) == {"generate", "depth_prepare", "check", "select", "total"}
    assert all(v >= 0 for v in res.timings_ms.values())


def _collision(feasible):
    P = len(feasible)
    return CollisionResult(np.asarray(feasible), np.full(P, np.inf), np.zeros(P), np.full(P, -1), np.zeros(P),
                           np.zeros((P, 2), bool), np.zeros((P, 2), bool))


def test_hysteresis_keeps_the_previous_family_unless_clearly_better():
    planner = PrimitivePlanner(PlannerConfig(library=LIB))
    prims = planner.library.generate(VehicleState.at_rest([0, 0, 1.5]))
    check = _collision(np.ones(len(prims), bool))
    fan = np.flatnonzero(~prims.is_brake)
    prev, other = fan[3], fan[40]
    total = np.ones(len(prims))
    total[prev], total[other] = 0.5, 0.47  # other is better, but by less than the hysteresis
    kw = dict(hysteresis=0.05, family_tol=0.1)
    assert select(prims, check, total, prev_end_vel=None, **kw) == other
    assert select(prims, check, total, prev_end_vel=prims.end_vel[prev], **kw) == prev
    total[other] = 0.40  # now better by more than the margin
    assert select(prims, check, total, prev_end_vel=prims.end_vel[prev], **kw) == other
    blocked = check.feasible.copy()
    blocked[prev] = False  # the previous family is blocked: never kept
    total[other] = 0.47
    assert select(prims, _collision(blocked), total, prev_end_vel=prims.end_vel[prev], **kw) != prev


def test_rejects_bad_input_with_named_fields():
    planner = PrimitivePlanner(PlannerConfig(library=LIB, require_depth=False))
    state = VehicleState.at_rest([0, 0, 1.5])
    with pytest.raises(ValueError, match="goal"):
        planner.plan(state, 0.0, np.array([1.0, 2.0]), OPEN)
    with pytest.raises(ValueError, match="goal"):
        planner.plan(state, 0.0, np.array([1.0, np.nan, 2.0]), OPEN)
    with pytest.raises(ValueError, match="now"):
        planner.plan(state, float("nan"), None, OPEN)
    with pytest.raises(ValueError, match="state"):
        planner.plan({"pos": [0, 0, 0]}, 0.0, None, OPEN)
    with pytest.raises(ValueError, match="distance_field"):
        planner.plan(state, 0.0, None, np.zeros((4, 4, 4)))
    tsdf_like = GridDistanceField(np.full((4, 4, 4), 0.3), [0, 0, 0], 0.1, max_distance=0.3)
    with pytest.raises(ValueError, match="max_distance"):
        planner.plan(state, 0.0, None, tsdf_like)
    with pytest.raises(ValueError, match="unknown_policy"):
        PlannerConfig(unknown_policy="reckless")
    with pytest.raises(ValueError, match="odom_timeout_s"):
        PlannerConfig(odom_timeout_s=0.0)
    with pytest.raises(ValueError, match="depth frame"):
        DepthFrame(np.zeros((10, 10), np.float32), CAM, np.eye(4))


def test_stuck_at_rest_the_stop_turns_toward_the_goal_and_keeps_turning():
    # only a small box around the vehicle is observed: with unknown space forbidden nothing is feasible
    closed = AnalyticDistanceField(ground=True, known_box=([-0.3, -0.3, 1.2], [0.3, 0.3, 1.8]))

    def stop(planner, goal_bearing_deg, speed=0.0, yaw=0.0):
        b = np.radians(goal_bearing_deg)
        state = VehicleState([0.0, 0.0, 1.5], [speed, 0.0, 0.0], [0, 0, 0], yaw, stamp=0.0)
        res = planner.plan(state, 0.0, np.array([10 * np.cos(b), 10 * np.sin(b), 1.5]), closed)
        assert res.status is PlanStatus.NO_FEASIBLE and res.braking
        if speed == 0.0:
            assert np.allclose(res.trajectory.pos, res.trajectory.pos[0], atol=1e-6)  # hovers in place
        return res

    planner = PrimitivePlanner(PlannerConfig(library=LIB, require_depth=False, stuck_yaw_rate_deg_s=45.0))
    res = stop(planner, 60.0)
    yaw, t = res.trajectory.yaw, res.trajectory.t
    assert "turning" in res.reason
    np.testing.assert_allclose(yaw, np.radians(45.0) * (t - t[0]), atol=1e-9)  # left, toward the goal
    # the turn keeps its direction while stuck, even once the goal lies to the other side
    assert np.all(np.diff(stop(planner, -60.0, yaw=1.0).trajectory.yaw) > 0)
    # a fresh planner turns right toward a goal on the right
    assert np.all(np.diff(stop(PrimitivePlanner(planner.config), -60.0).trajectory.yaw) < 0)
    # still moving: the brake holds its yaw; disabled: no turn
    for cfg, speed in ((planner.config, 2.0), (PlannerConfig(library=LIB, require_depth=False,
                                                             stuck_yaw_rate_deg_s=0.0), 0.0)):
        res = stop(PrimitivePlanner(cfg), 60.0, speed=speed)
        assert "turning" not in res.reason and np.ptp(res.trajectory.yaw) < 1e-9
