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

from depth_nodes.planning import kernels
from depth_nodes.planning.collision import (CollisionResult, DepthObstacleImage, UnknownPolicy,
                                            check_primitives, path_points, required_clearance)
from depth_nodes.planning.distance import DistanceField
from depth_nodes.planning.primitives import PrimitiveLibrary, PrimitiveLibraryConfig, PrimitiveSet, wrap_angle
from depth_nodes.planning.selection import CostWeights, best_brake, primitive_costs, select
from depth_nodes.geometry import finite_scalar, finite_vector
from depth_nodes.planning.state import DepthFrame, VehicleState
from depth_nodes.trajectory import Trajectory


#: Horizontal speed (m/s) below which a vehicle with no feasible primitive counts as stopped.
STUCK_SPEED_M_S = 0.3


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
    max_altitude: float | None = None   # world z (a flight ceiling, e.g. below a forest canopy); None disables
    require_depth: bool = True          # without a fresh depth frame, brake
    fov_half_angle_deg: float = 40.0    # used for the fov cost when no depth frame is given
    no_return_free_m: float = 0.0       # NaN depth pixels mean free space up to this optical z (0: unknown)
    depth_pool: int = 2                 # depth image min-pooled over pool x pool tiles before the checks
    stuck_yaw_rate_deg_s: float = 45.0  # no feasible primitive, nearly at rest: the stop turns this fast (0: holds yaw)

    def __post_init__(self):
        for name in ("robot_radius", "margin", "hysteresis", "family_tol", "future_tolerance_s",
                     "goal_tolerance", "unknown_free_dist", "no_return_free_m", "stuck_yaw_rate_deg_s"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f"planner {name} must be finite and >= 0, got {v}")
        for name in ("depth_timeout_s", "odom_timeout_s"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"planner {name} must be finite and > 0, got {v}")
        if not 0 < self.fov_half_angle_deg < 90:
            raise ValueError(f"fov_half_angle_deg must be in (0, 90), got {self.fov_half_angle_deg}")
        for name in ("min_altitude", "max_altitude"):
            v = getattr(self, name)
            if v is not None and not np.isfinite(v):
                raise ValueError(f"{name} must be finite or None, got {v}")
        if self.min_altitude is not None and self.max_altitude is not None and self.max_altitude <= self.min_altitude:
            raise ValueError(f"max_altitude ({self.max_altitude}) must exceed min_altitude ({self.min_altitude})")
        UnknownPolicy.parse(self.unknown_policy)
        pool = self.depth_pool
        if isinstance(pool, bool) or not isinstance(pool, (int, np.integer)) or not 1 <= pool <= 16:
            raise ValueError(f"depth_pool must be an integer in [1, 16], got {self.depth_pool!r}")
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
        kernels.warm_up()  # the compiled kernels are ready before the first cycle
        self.library = PrimitiveLibrary(cfg.library)
        self.policy = UnknownPolicy.parse(cfg.unknown_policy)
        # sideways body extent for the depth image's erosion (along the ray the full
        # per-primitive clearance, sampling pad included, applies)
        self.lateral_clearance = cfg.robot_radius + cfg.margin
        self._prev_end_vel: np.ndarray | None = None
        self._turn_sign: float | None = None     # direction of the look-around turn while stuck
        self._depth_cache: tuple[DepthFrame, DepthObstacleImage] | None = None
        self._prims_cache: tuple[VehicleState, tuple | None, PrimitiveSet, float] | None = None

    def reset(self) -> None:
        """Forget the previous choice (e.g. after a new goal or a teleport)."""
        self._prev_end_vel = None
        self._turn_sign = None

    def _look_around_yaw(self, state: VehicleState, prims: PrimitiveSet, goal) -> np.ndarray | None:
        """Yaw (S,) for a stop when nothing is feasible and the vehicle is nearly at rest, else None.

        Hovering with a fixed heading, the camera keeps seeing the same view, and a
        blocked view (a phantom from the depth estimate, or a dead end) never
        changes; unobserved space beside it stays forbidden. Turning in place shows
        the map new directions and new depth of the old ones. The turn starts
        toward the goal's bearing and keeps its direction until a primitive is
        feasible again.
        """
        rate = np.radians(self.config.stuck_yaw_rate_deg_s)
        if rate <= 0 or np.hypot(state.vel[0], state.vel[1]) > STUCK_SPEED_M_S:
            return None
        if self._turn_sign is None:
            err = 0.0 if goal is None else float(
                wrap_angle(np.arctan2(goal[1] - state.pos[1], goal[0] - state.pos[0]) - state.yaw))
            self._turn_sign = -1.0 if err < 0 else 1.0
        return state.yaw + self._turn_sign * rate * (prims.t - prims.t[0])

    def prepare_depth(self, frame: DepthFrame) -> DepthObstacleImage:
        """The eroded depth image of ``frame`` (cached for the latest frame)."""
        if self._depth_cache is None or self._depth_cache[0] is not frame:
            self._depth_cache = (frame, DepthObstacleImage(frame, self.lateral_clearance,
                                                           self.config.no_return_free_m, self.config.depth_pool))
        return self._depth_cache[1]

    def candidates(self, state: VehicleState, goal=None) -> PrimitiveSet:
        """The primitives from ``state`` toward ``goal`` (cached for the latest
        (state object, goal) pair, so sizing a map window with :meth:`path_bounds`
        before :meth:`plan` generates them once)."""
        return self._generate(state, goal)[0]

    def _generate(self, state: VehicleState, goal) -> tuple[PrimitiveSet, float, bool]:
        """(primitives, ms spent generating them, whether they came from the cache)."""
        key = None if goal is None else tuple(float(x) for x in np.asarray(goal).reshape(-1))
        c = self._prims_cache
        if c is not None and c[0] is state and c[1] == key:
            return c[2], c[3], True
        t0 = time.perf_counter()
        prims = self.library.generate(state, None if goal is None else np.asarray(goal, dtype=np.float64))
        self._prims_cache = (state, key, prims, (time.perf_counter() - t0) * 1e3)
        return prims, self._prims_cache[3], False

    def path_bounds(self, state: VehicleState, goal=None, pad: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi) (3,) world corners of the box around every candidate path point
        (samples and stopping tails) from ``state``, grown by ``pad`` metres.

        A distance window over this box grown by its saturation distance gives
        exact distances at every point the planner will check.
        """
        if not isinstance(state, VehicleState):
            raise ValueError(f"state must be a VehicleState, got {type(state).__name__}")
        pad = finite_scalar(pad, "pad")
        if pad < 0:
            raise ValueError(f"pad must be >= 0, got {pad}")
        goal = None if goal is None else finite_vector(goal, 3, "goal")
        lo, hi, _ = kernels.path_extent(path_points(self.candidates(state, goal)))
        return lo - pad, hi + pad

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
             odom_stamp: float | None = None, depth_stamp: float | None = None, guidance=None) -> PlanResult:
        """Choose the primitive to fly from ``state`` at time ``now`` (seconds).

        ``goal`` (3,) world metres or None to explore forward. ``odom_stamp`` and
        ``depth_stamp`` default to ``state.stamp`` and ``depth_frame.stamp``.
        ``guidance``: optional cost-to-go toward ``goal`` with ``query(points) ->
        (N,) metres`` (a :class:`~depth_nodes.planning.guidance.GoalGuidance`)
        that replaces the straight-line distance in the progress cost.
        """
        t_start = time.perf_counter()
        cfg = self.config
        if not isinstance(state, VehicleState):
            raise ValueError(f"state must be a VehicleState, got {type(state).__name__}")
        if distance_field is not None and not callable(getattr(distance_field, "query", None)):
            raise ValueError(f"distance_field must have query(points) -> (distance, known), "
                             f"got {type(distance_field).__name__}")
        if guidance is not None and not callable(getattr(guidance, "query", None)):
            raise ValueError(f"guidance must have query(points) -> metres, got {type(guidance).__name__}")
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
        prims, generate_ms, generated_before = self._generate(state, goal)
        t1 = time.perf_counter()
        depth_image = self.prepare_depth(depth_frame) if use_depth else None
        t2 = time.perf_counter()
        check = check_primitives(prims, required_clearance(prims, cfg.robot_radius, cfg.margin),
                                 distance_field=distance_field, depth_image=depth_image, policy=self.policy,
                                 unknown_free_dist=cfg.unknown_free_dist, min_altitude=cfg.min_altitude,
                                 max_altitude=cfg.max_altitude)
        t3 = time.perf_counter()
        fov_half = (np.radians(0.5 * depth_frame.camera.hfov_deg) if depth_frame is not None
                    else np.radians(cfg.fov_half_angle_deg))
        ref = self._prev_end_vel if self._prev_end_vel is not None else state.vel
        costs = primitive_costs(prims, check, start_yaw=state.yaw, goal=goal, ref_end_vel=ref,
                                weights=cfg.weights, v_max=cfg.library.v_max, fov_half_angle=fov_half,
                                penalise_unknown=self.policy is UnknownPolicy.PENALTY,
                                cost_to_go=None if guidance is None else guidance.query)
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
        yaw = None
        if index < 0:
            index = best_brake(prims, check)
            if not check.feasible[index]:
                reason += "; the brake itself is blocked (commanded anyway)"
            if status is PlanStatus.NO_FEASIBLE:
                yaw = self._look_around_yaw(state, prims, goal)
                if yaw is not None:
                    reason += "; turning in place to look for a way"
        if status in (PlanStatus.OK, PlanStatus.NO_GOAL_EXPLORE, PlanStatus.GOAL_REACHED):
            self._turn_sign = None
        t4 = time.perf_counter()
        self._prev_end_vel = (prims.end_vel[index].copy()
                              if status in (PlanStatus.OK, PlanStatus.NO_GOAL_EXPLORE) and not prims.is_brake[index]
                              else None)
        traj = Trajectory(t=prims.t, pos=prims.pos[index], vel=prims.vel[index], acc=prims.acc[index],
                          yaw=prims.yaw[index] if yaw is None else yaw, stamp=odom_stamp)
        timings = {"generate": generate_ms, "depth_prepare": (t2 - t1) * 1e3, "check": (t3 - t2) * 1e3,
                   "select": (t4 - t3) * 1e3}
        # generation may have happened earlier (path_bounds): count it once, here
        timings["total"] = (time.perf_counter() - t_start) * 1e3 + (generate_ms if generated_before else 0.0)
        return PlanResult(trajectory=traj, index=int(index), status=status, reason=reason, candidates=prims,
                          collision=check, costs=costs, timings_ms=timings, goal=goal)
