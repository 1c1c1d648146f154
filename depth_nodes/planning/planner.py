"""The motion-primitive planner: generate, check, score, choose, or brake and say why.

One call per control cycle::

    planner = PrimitivePlanner(PlannerConfig())
    result = planner.plan(state, now, goal, distance_field, depth_frame)
    vehicle.follow(result.trajectory)

Inputs are what a closed loop has anyway: the vehicle state, a distance field
(map), the newest depth frame and the current time. Stale or missing inputs,
a reached goal, or no feasible primitive command a brake-to-stop primitive
(even if it collides: it is still the best there is) with a status and reason.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from depth_nodes.planning.collision import (CollisionResult, DepthObstacleImage, UnknownPolicy,
                                            check_primitives, required_clearance)
from depth_nodes.planning.distance import DistanceField
from depth_nodes.planning.primitives import PrimitiveLibrary, PrimitiveLibraryConfig, PrimitiveSet
from depth_nodes.planning.selection import CostWeights, best_brake, primitive_costs, select
from depth_nodes.geometry import finite_scalar, finite_vector
from depth_nodes.planning.state import DepthFrame, VehicleState
from depth_nodes.trajectory import Trajectory


class PlanStatus(str, Enum):
    OK = "ok"
    NO_FEASIBLE = "no_feasible"
    STALE_DEPTH = "stale_depth"
    STALE_ODOM = "stale_odom"
    GOAL_REACHED = "goal_reached"
    NO_GOAL_EXPLORE = "no_goal_explore"


@dataclass(frozen=True)
class PlannerConfig:
    """Planner parameters (metres, seconds, degrees)."""

    robot_radius: float = 0.25
    margin: float = 0.1
    library: PrimitiveLibraryConfig = field(default_factory=PrimitiveLibraryConfig)
    weights: CostWeights = field(default_factory=CostWeights)
    hysteresis: float = 0.05            # cost margin a new family must win by
    family_tol: float = 0.6             # m/s: end velocities this close continue the previous choice
    depth_timeout_s: float = 0.3
    odom_timeout_s: float = 0.2
    future_tolerance_s: float = 0.05    # stamps this far ahead of ``now`` are accepted (clock jitter)
    goal_tolerance: float = 0.3
    unknown_policy: str = "forbid"
    unknown_free_dist: float = 0.5      # forbid policy: unknown space this close to the start is allowed
    min_altitude: float | None = 0.2    # world z; None disables
    require_depth: bool = True          # without a fresh depth frame, brake
    fov_half_angle_deg: float = 40.0    # used for the fov cost when no depth frame is given

    def __post_init__(self):
        for name in ("robot_radius", "margin", "hysteresis", "family_tol", "future_tolerance_s",
                     "goal_tolerance", "unknown_free_dist"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f"planner {name} must be finite and >= 0, got {v}")
        for name in ("depth_timeout_s", "odom_timeout_s"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"planner {name} must be finite and > 0, got {v}")
        if not 0 < self.fov_half_angle_deg < 90:
            raise ValueError(f"fov_half_angle_deg must be in (0, 90), got {self.fov_half_angle_deg}")
        if self.min_altitude is not None and not np.isfinite(self.min_altitude):
            raise ValueError(f"min_altitude must be finite or None, got {self.min_altitude}")
        UnknownPolicy.parse(self.unknown_policy)
        if not self.library.include_brake:
            raise ValueError("the planner needs brake primitives (library.include_brake=True)")


@dataclass(frozen=True)
class PlanResult:
    """Outcome of one planning cycle.

    ``trajectory`` is the commanded primitive (stamped at the odometry time),
    ``index`` its row in ``candidates``; ``costs`` maps term names to (P,)
    arrays (``total`` included); ``timings_ms`` has ``generate``,
    ``depth_prepare``, ``check``, ``select`` and ``total``.
    """

    trajectory: Trajectory
    index: int
    status: PlanStatus
    reason: str
    candidates: PrimitiveSet
    collision: CollisionResult
    costs: dict
    timings_ms: dict
    goal: np.ndarray | None = None

    @property
    def braking(self) -> bool:
        return bool(self.candidates.is_brake[self.index])


class PrimitivePlanner:
    """Stateful planner (remembers the previous choice for hysteresis and the prepared depth frame)."""

    def __init__(self, config: PlannerConfig | None = None):
        self.config = cfg = config or PlannerConfig()
        self.library = PrimitiveLibrary(cfg.library)
        self.policy = UnknownPolicy.parse(cfg.unknown_policy)
        # sideways body extent for the depth image's erosion (along the ray the full
        # per-primitive clearance, sampling pad included, applies)
        self.lateral_clearance = cfg.robot_radius + cfg.margin
        self._prev_end_vel: np.ndarray | None = None
        self._depth_cache: tuple[DepthFrame, DepthObstacleImage] | None = None

    def reset(self) -> None:
        """Forget the previous choice (e.g. after a new goal or a teleport)."""
        self._prev_end_vel = None

    def prepare_depth(self, frame: DepthFrame) -> DepthObstacleImage:
        """The eroded depth image of ``frame`` (cached for the latest frame)."""
        if self._depth_cache is None or self._depth_cache[0] is not frame:
            self._depth_cache = (frame, DepthObstacleImage(frame, self.lateral_clearance))
        return self._depth_cache[1]

    def _staleness(self, now: float, odom_stamp: float, depth_frame: DepthFrame | None,
                   depth_stamp: float | None) -> tuple[PlanStatus | None, str, bool]:
        """(status or None, reason, depth usable)."""
        cfg = self.config
        age = now - odom_stamp
        if age > cfg.odom_timeout_s:
            return PlanStatus.STALE_ODOM, f"odometry is {age:.3f} s old (limit {cfg.odom_timeout_s} s)", False
        if age < -cfg.future_tolerance_s:
            return PlanStatus.STALE_ODOM, f"odometry stamp is {-age:.3f} s in the future", False
        if depth_frame is None:
            if cfg.require_depth:
                return PlanStatus.STALE_DEPTH, "no depth frame", False
            return None, "", False
        dage = now - depth_stamp
        if dage < -cfg.future_tolerance_s:
            return PlanStatus.STALE_DEPTH, f"depth stamp is {-dage:.3f} s in the future", False
        if dage > cfg.depth_timeout_s:
            if cfg.require_depth:
                return PlanStatus.STALE_DEPTH, f"depth is {dage:.3f} s old (limit {cfg.depth_timeout_s} s)", False
            return None, "", False
        return None, "", True

    def plan(self, state: VehicleState, now: float, goal=None,
             distance_field: DistanceField | None = None, depth_frame: DepthFrame | None = None,
             odom_stamp: float | None = None, depth_stamp: float | None = None) -> PlanResult:
        """Choose the primitive to fly from ``state`` at time ``now`` (seconds).

        ``goal`` (3,) world metres or None to explore forward. ``odom_stamp`` and
        ``depth_stamp`` default to ``state.stamp`` and ``depth_frame.stamp``.
        """
        t_start = time.perf_counter()
        cfg = self.config
        if not isinstance(state, VehicleState):
            raise ValueError(f"state must be a VehicleState, got {type(state).__name__}")
        if distance_field is not None and not callable(getattr(distance_field, "query", None)):
            raise ValueError(f"distance_field must have query(points) -> (distance, known), "
                             f"got {type(distance_field).__name__}")
        if depth_frame is not None and not isinstance(depth_frame, DepthFrame):
            raise ValueError(f"depth_frame must be a DepthFrame or None, got {type(depth_frame).__name__}")
        now = finite_scalar(now, "now")
        goal = None if goal is None else finite_vector(goal, 3, "goal")
        odom_stamp = state.stamp if odom_stamp is None else finite_scalar(odom_stamp, "odom_stamp")
        if depth_frame is not None:
            depth_stamp = depth_frame.stamp if depth_stamp is None else finite_scalar(depth_stamp, "depth_stamp")
        clearance = cfg.robot_radius + cfg.margin
        limit = float(getattr(distance_field, "max_distance", np.inf))
        if clearance > limit:
            raise ValueError(f"distance_field saturates at max_distance={limit} m, below the required "
                             f"clearance robot_radius + margin = {clearance} m; use the ESDF")

        status, reason, use_depth = self._staleness(now, odom_stamp, depth_frame, depth_stamp)
        t0 = time.perf_counter()
        prims = self.library.generate(state, goal)
        t1 = time.perf_counter()
        depth_image = self.prepare_depth(depth_frame) if use_depth else None
        t2 = time.perf_counter()
        check = check_primitives(prims, required_clearance(prims, cfg.robot_radius, cfg.margin),
                                 distance_field=distance_field, depth_image=depth_image, policy=self.policy,
                                 unknown_free_dist=cfg.unknown_free_dist, min_altitude=cfg.min_altitude)
        t3 = time.perf_counter()
        fov_half = (np.radians(0.5 * depth_frame.camera.hfov_deg) if depth_frame is not None
                    else np.radians(cfg.fov_half_angle_deg))
        ref = self._prev_end_vel if self._prev_end_vel is not None else state.vel
        costs = primitive_costs(prims, check, start_yaw=state.yaw, goal=goal, ref_end_vel=ref,
                                weights=cfg.weights, v_max=cfg.library.v_max, fov_half_angle=fov_half,
                                penalise_unknown=self.policy is UnknownPolicy.PENALTY)
        index = -1
        if status is None and goal is not None and np.linalg.norm(state.pos - goal) <= cfg.goal_tolerance:
            brake = best_brake(prims, check)
            if check.feasible[brake]:  # otherwise stopping here collides: keep flying
                status, reason, index = PlanStatus.GOAL_REACHED, f"within {cfg.goal_tolerance} m of the goal", brake
        if status is None:
            index = select(prims, check, costs["total"], prev_end_vel=self._prev_end_vel,
                           hysteresis=cfg.hysteresis, family_tol=cfg.family_tol)
            if index < 0 or not np.any(check.feasible & ~prims.is_brake):
                n_limits = prims.report["n_discarded_velocity"] + prims.report["n_discarded_acceleration"]
                status = PlanStatus.NO_FEASIBLE
                reason = (f"all {int((~prims.is_brake).sum())} motion primitives blocked "
                          f"({n_limits} more discarded by velocity/acceleration limits)")
                index = -1
            else:
                status = PlanStatus.OK if goal is not None else PlanStatus.NO_GOAL_EXPLORE
                reason = "lowest-cost feasible primitive" if goal is not None else "no goal: exploring forward"
        if index < 0:
            index = best_brake(prims, check)
            if not check.feasible[index]:
                reason += "; the brake itself is blocked (commanded anyway)"
        t4 = time.perf_counter()
        self._prev_end_vel = (prims.end_vel[index].copy()
                              if status in (PlanStatus.OK, PlanStatus.NO_GOAL_EXPLORE) and not prims.is_brake[index]
                              else None)
        traj = Trajectory(t=prims.t, pos=prims.pos[index], vel=prims.vel[index], acc=prims.acc[index],
                          yaw=prims.yaw[index], stamp=odom_stamp)
        timings = {"generate": (t1 - t0) * 1e3, "depth_prepare": (t2 - t1) * 1e3, "check": (t3 - t2) * 1e3,
                   "select": (t4 - t3) * 1e3, "total": (time.perf_counter() - t_start) * 1e3}
        return PlanResult(trajectory=traj, index=int(index), status=status, reason=reason, candidates=prims,
                          collision=check, costs=costs, timings_ms=timings, goal=goal)
