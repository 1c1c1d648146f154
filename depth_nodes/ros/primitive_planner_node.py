"""primitive_planner_node: odometry + goal + TSDF distances -> a motion primitive to fly.

Runs in one process with the tsdf_mapper_node (``main`` composes both, sharing
one :class:`~depth_nodes.mapping.mapper.Mapper`): every cycle the planner
needs a Euclidean distance window of about a million voxels from the map,
which would be ~16 MB per cycle as a message. The mapper extracts that window
right after each integration (``esdf_slack_m``), so a planning cycle neither
waits for the map lock nor pays for the extraction.

Subscribes ``odom`` (nav_msgs/Odometry; twist in base_link), ``goal_pose``
(geometry_msgs/PoseStamped in ``map``; without a goal the planner explores
forward), ``depth/image`` + ``depth/camera_info`` (newest frame, for the
depth-image collision check). It plans with
:class:`depth_nodes.planning.PrimitivePlanner`, optionally steered toward the goal by a
geodesic guidance rebuilt from the map every ``guidance_period_s`` (``trigger``: ``depth`` = once per
new depth frame as soon as odometry reaches its stamp, the ``rate_hz`` timer
then only plans, i.e. brakes, when depth is older than ``depth_timeout_s``;
``timer`` = at ``rate_hz`` on the newest frame) and publishes
``planner/trajectory`` (MultiDOFJointTrajectory, stamped at the plan time),
``planner/path`` (nav_msgs/Path), ``planner/primitives`` (MarkerArray:
candidates green feasible / red blocked, the chosen one thicker) and
``planner/status`` (std_msgs/String JSON: status, reason, stamp, depth_stamp of the
depth frame used, timings). Stale or
missing odometry/depth make the core command a brake.
"""
from __future__ import annotations

import json
import sys

import numpy as np
from geometry_msgs.msg import Point, PoseStamped
from nav_msgs.msg import Odometry, Path
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import ColorRGBA, String
from trajectory_msgs.msg import MultiDOFJointTrajectory
from visualization_msgs.msg import Marker, MarkerArray

from depth_nodes.geometry import finite_vector, rot_to_yaw
from depth_nodes.mapping.mapper import Mapper
from depth_nodes.mapping.pose_buffer import PoseBuffer
from depth_nodes.params import Param
from depth_nodes.planning.guidance import GoalGuidance, guidance_from_map
from depth_nodes.planning.planner import PlannerConfig, PlanResult, PrimitivePlanner
from depth_nodes.planning.primitives import PrimitiveLibraryConfig
from depth_nodes.planning.state import DepthFrame, VehicleState
from depth_nodes.ros import tsdf_mapper_node
from depth_nodes.ros.conversions import make_header, pose_msg_to_matrix, twist_msg_to_array
from depth_nodes.ros.conversions_traj import restamp, trajectory_to_msg, trajectory_to_path_msg
from depth_nodes.ros.node_base import SENSOR_QOS, BaseNode, run_node
from depth_nodes.ros.tsdf_mapper_node import DepthFrameInput, TsdfMapperNode, check_stamp_not_ahead, odometry_pose

NODE_NAME = "primitive_planner_node"

PARAMS: tuple[Param, ...] = (
    Param("rate_hz", 10.0, "Planning rate (Hz); with trigger depth, the rate of the stale-depth check.", 0.5, 100.0),
    Param("trigger", "depth", "When to plan: depth (on every new depth frame once odometry reaches its stamp: "
          "least latency), map (the same, once the mapper has also integrated that frame: the plan sees a map "
          "holding it, and a lockstep simulator's flight repeats exactly; costs the integration's latency; "
          "mav_nav.launch.py sets it for the lockstep simulator) or timer (at rate_hz on the newest depth frame).",
          choices=("depth", "map", "timer")),
    Param("robot_radius", 0.25, "Vehicle radius for collision checking (metres).", 0.01, 5.0),
    Param("margin", 0.1, "Extra clearance kept from obstacles beyond robot_radius (metres).", 0.0, 5.0),
    Param("speeds", [0.5, 1.0, 2.0, 3.0], "Horizontal end speeds of the primitive fan (m/s)."),
    Param("horizon_s", 2.0, "Duration of each primitive (seconds).", 0.2, 10.0),
    Param("v_max", 3.5, "Largest speed along a primitive (m/s).", 0.1, 30.0),
    Param("a_max", 4.0, "Largest acceleration along a primitive (m/s^2).", 0.1, 30.0),
    Param("unknown_policy", "forbid", "Unobserved space: forbid (blocked beyond a short distance), penalty "
          "(allowed, costed) or optimistic (free).", choices=("forbid", "penalty", "optimistic")),
    Param("no_return_free_m", 0.0, "NaN depth pixels count as free space up to this optical depth (metres), for "
          "depth sources whose NaN means nothing within range (the stereo network: disparity below its minimum; "
          "mav_nav.launch.py sets it then); 0: NaN is unknown (SGBM's holes, real sensors' dropouts).", 0.0, 100.0),
    Param("stuck_yaw_rate_deg_s", 45.0, "With no feasible primitive and the vehicle nearly at rest, the stop turns "
          "in place this fast (degrees/s), first toward the goal, so the camera shows the map new directions; "
          "0: the stop holds its yaw.", 0.0, 360.0),
    Param("depth_timeout_s", 0.3, "Depth older than this makes the planner brake (seconds).", 0.01, 10.0),
    Param("odom_timeout_s", 0.2, "Odometry older than this makes the planner brake (seconds).", 0.01, 10.0),
    Param("goal_tolerance", 0.3, "Distance at which the goal counts as reached (metres).", 0.01, 10.0),
    Param("esdf_half_extent_xyz", [8.0, 8.0, 2.0], "Half size of the distance window around the vehicle, "
          "x, y, z (metres); should cover horizon_s * v_max."),
    Param("esdf_max_distance_m", 1.0, "Distances saturate here; must exceed robot_radius + margin (metres).",
          0.1, 10.0),
    Param("esdf_slack_m", 0.4, "The mapper extracts the distance window after each integration, this much larger "
          "(metres), and a cycle reuses it while the vehicle stays within the slack; 0: every cycle extracts its own "
          "window (and waits for an integration in progress).", 0.0, 5.0),
    Param("guidance_period_s", 0.0, "Rebuild the goal guidance (geodesic cost-to-go around mapped obstacles, as "
          "eval flight uses) this often (seconds); 0: straight-line progress. Off by default: in the live graph it "
          "still stalls the vehicle on some small worlds.", 0.0, 10.0),
    Param("min_altitude", 0.2, "Lowest world z a primitive may reach (metres).", -1000.0, 10000.0),
    Param("max_altitude", 0.0, "Flight ceiling, world z (metres); 0: none (the guidance then spans up to 2 m "
          "above the vehicle).", -1000.0, 10000.0),
    Param("max_marker_primitives", 100, "Most candidates drawn in planner/primitives (0: none).", 0, 1000),
)

#: The mapper and the planner run in one process (see module doc): both nodes' parameters.
NODE_PARAMS = {tsdf_mapper_node.NODE_NAME: tsdf_mapper_node.PARAMS, NODE_NAME: PARAMS}

_GREEN = ColorRGBA(r=0.1, g=0.8, b=0.2, a=0.6)
_RED = ColorRGBA(r=0.9, g=0.1, b=0.1, a=0.6)
_CHOSEN = ColorRGBA(r=0.1, g=0.4, b=1.0, a=1.0)


def planner_config_from_params(node: BaseNode) -> PlannerConfig:
    p = node.param
    speeds = tuple(float(v) for v in p("speeds"))
    library = PrimitiveLibraryConfig(speeds=speeds, horizon_s=p("horizon_s"), v_max=p("v_max"), a_max=p("a_max"))
    return PlannerConfig(robot_radius=p("robot_radius"), margin=p("margin"), library=library,
                         unknown_policy=p("unknown_policy"), depth_timeout_s=p("depth_timeout_s"),
                         odom_timeout_s=p("odom_timeout_s"), goal_tolerance=p("goal_tolerance"),
                         min_altitude=p("min_altitude"), max_altitude=p("max_altitude") or None,
                         no_return_free_m=p("no_return_free_m"),
                         stuck_yaw_rate_deg_s=p("stuck_yaw_rate_deg_s"))


def marker_indices(result: PlanResult, limit: int) -> np.ndarray:
    """At most ``limit`` candidate indices, evenly spread, always including the chosen one."""
    n = len(result.candidates)
    if limit <= 0 or n == 0:
        return np.zeros(0, np.int64)
    idx = np.unique(np.linspace(0, n - 1, min(n, limit)).round().astype(np.int64))
    if result.index not in idx:
        idx[np.argmin(np.abs(idx - result.index))] = result.index
    return np.unique(idx)


class PrimitivePlannerNode(BaseNode):
    """Glue between odometry/goal/depth topics, the shared Mapper's ESDF and the planner."""

    def __init__(self, mapper: Mapper, **kwargs):
        super().__init__(NODE_NAME, PARAMS, **kwargs)
        if not isinstance(mapper, Mapper):
            raise ValueError(f"mapper must be a Mapper, got {type(mapper).__name__}")
        self.mapper = mapper
        self.config = planner_config_from_params(self)
        self.half_extent = finite_vector(self.param("esdf_half_extent_xyz"), 3, "esdf_half_extent_xyz")
        if np.any(self.half_extent <= 0):
            raise ValueError(f"esdf_half_extent_xyz must be positive, got {self.half_extent.tolist()}")
        clearance = self.config.robot_radius + self.config.margin
        if self.param("esdf_max_distance_m") < clearance:
            raise ValueError(f"esdf_max_distance_m={self.param('esdf_max_distance_m')} is below robot_radius + "
                             f"margin = {clearance}")
        self.planner = PrimitivePlanner(self.config)
        if self.param("esdf_slack_m") > 0:
            mapper.track_esdf(self.half_extent, self.param("esdf_max_distance_m"), self.param("esdf_slack_m"))
        self.goal: np.ndarray | None = None
        self._odom: tuple[float, np.ndarray, np.ndarray] | None = None  # stamp, T_world_body, world velocity
        self._depth: tuple[float, np.ndarray, object] | None = None     # newest frame: stamp, depth, camera
        self._frame: DepthFrame | None = None                            # newest frame with a pose
        # own odometry history for depth-frame poses: a frame is planned on as soon as *this* node's odometry
        # brackets its stamp (the shared mapper's history is filled by the other node's callbacks)
        self.poses = PoseBuffer(max_age_s=mapper.poses.max_age_s, max_extrapolation_s=mapper.poses.max_extrapolation_s)
        self.trigger_on_depth = self.param("trigger") in ("depth", "map")
        self.wait_for_map = self.param("trigger") == "map"
        if self.wait_for_map:
            mapper.add_listener(lambda _stamp: self._plan_on_new_depth())
        self._first_tick: float | None = None  # clock time of the first timer cycle (s)
        self._timer_plan_due = False  # a timer cycle found no odometry: plan when it arrives
        # depth-triggered cycles run from a guard condition: frames that arrive while a cycle runs
        # are coalesced into one cycle on the newest (a late planner never works through a backlog)
        self._plan_guard = self.create_guard_condition(self._on_plan_guard)
        self.last_result: PlanResult | None = None
        self._guidance: tuple[float, GoalGuidance] | None = None  # (built at, guidance toward self.goal)
        self.create_subscription(Odometry, "odom", self._on_odom, SENSOR_QOS)
        # volatile for goals clicked in RViz; transient local for a latched goal published before we started
        # (a transient-local subscription would not match volatile publishers)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        for qos in (QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE), latched):
            self.create_subscription(PoseStamped, "goal_pose", self._on_goal, qos)
        self.depth_input = DepthFrameInput(self, self._on_depth, on_repeat=self._on_repeated_depth)
        self._last_answer: tuple[float, MultiDOFJointTrajectory] | None = None  # (depth stamp, trajectory sent)
        reliable = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        self.traj_pub = self.create_publisher(MultiDOFJointTrajectory, "planner/trajectory", reliable)
        self.path_pub = self.create_publisher(Path, "planner/path", reliable)
        self.markers_pub = self.create_publisher(MarkerArray, "planner/primitives", reliable)
        self.status_pub = self.create_publisher(String, "planner/status", QoSProfile(depth=10))
        self.create_timer(1.0 / self.param("rate_hz"), self._on_timer)

    # ------------------------------------------------------------------ inputs
    def _on_odom(self, msg: Odometry) -> None:
        self.received("odom")
        try:
            stamp, T = odometry_pose(msg)
            check_stamp_not_ahead(self, stamp)
            vel = T[:3, :3] @ twist_msg_to_array(msg)[:3]  # twist is in base_link: rotate into map
        except ValueError as exc:
            self.reject("odom", str(exc))
            return
        if self._odom is not None and stamp < self._odom[0]:
            self.reject("odom", f"stamp {stamp:.6f} older than the newest odometry {self._odom[0]:.6f}")
            return
        self._odom = (stamp, T, vel)
        self.poses.add(stamp, T)
        if self._timer_plan_due:
            self._on_timer()  # decided again: the odometry may make the cycle unnecessary
        self._plan_on_new_depth()

    def _on_goal(self, msg: PoseStamped) -> None:
        self.received("goal_pose")
        try:
            if msg.header.frame_id not in ("map", ""):
                raise ValueError(f"goal frame_id must be 'map', got {msg.header.frame_id!r} (no tf)")
            goal = pose_msg_to_matrix(msg)[:3, 3]
        except ValueError as exc:
            self.reject("goal_pose", str(exc))
            return
        if self.goal is not None and np.array_equal(goal, self.goal):
            return  # the same goal again (a latched goal arrives on both subscriptions)
        self.goal = goal
        self._guidance = None
        self.planner.reset()
        self.get_logger().info(f"new goal {np.round(goal, 2).tolist()}")

    def _on_depth(self, stamp: float, depth: np.ndarray, camera) -> None:
        self._depth = (stamp, depth, camera)
        self._plan_on_new_depth()

    def _on_repeated_depth(self, stamp: float) -> None:
        """The frame planned on last came again (e.g. a lockstep simulator repeating a frame
        because the answer went missing): send that answer again."""
        if self._last_answer is not None and self._last_answer[0] == stamp:
            self.traj_pub.publish(self._last_answer[1])

    def _awaits_odometry(self, stamp: float) -> bool:
        span = self.poses.span
        return span is None or stamp > span[1] + self.poses.max_extrapolation_s

    def _depth_ready(self) -> bool:
        if self._depth is None or self._awaits_odometry(self._depth[0]):
            return False
        if self.wait_for_map:
            integrated = self.mapper.processed_stamp
            return integrated is not None and integrated >= self._depth[0]
        return True

    def _plan_on_new_depth(self) -> None:
        """trigger=depth|map: plan once the pending depth frame's pose is known (stamped no earlier than it)
        and, with map, the mapper has integrated it."""
        if self.trigger_on_depth and self._depth_ready():
            self._plan_guard.trigger()

    def _on_plan_guard(self) -> None:
        if self._depth_ready():
            self.plan_once(not_before=self._depth[0])

    def _on_timer(self) -> None:
        """trigger=timer: plan. trigger=depth|map: plan (brake) only when depth (with map: the map) is stale
        or has been missing for depth_timeout_s since the first cycle."""
        newest = self.depth_input.newest_stamp
        if self.wait_for_map and newest is not None:
            integrated = self.mapper.processed_stamp  # a mapper that falls behind makes the map stale
            newest = None if integrated is None else min(newest, integrated)
        now = self.get_clock().now().nanoseconds * 1e-9
        if self._first_tick is None and now > 0:
            self._first_tick = now
        odom_fresh = self._odom is not None and now - self._odom[0] <= self.config.odom_timeout_s
        # no depth yet: wait depth_timeout_s from the first cycle before braking, so the first frame, not
        # a start-up brake, answers a lockstep simulator's first camera frame
        since = newest if newest is not None else self._first_tick
        if self.trigger_on_depth and odom_fresh and since is not None and now - since < self.config.depth_timeout_s:
            self._timer_plan_due = False
            return  # stale odometry brakes on the timer too: without it no depth frame gets a pose
        self._timer_plan_due = True
        self.plan_once()

    def _depth_frame(self) -> DepthFrame | None:
        """The newest depth frame whose camera pose (interpolated odometry) is known.

        A frame newer than the odometry is kept for the next cycle meanwhile the
        previous frame is used (the planner judges its age)."""
        if self._depth is not None and not self._awaits_odometry(self._depth[0]):
            stamp, depth, camera = self._depth
            self._depth = None
            try:
                self._frame = DepthFrame(depth, camera, self.poses.lookup(stamp) @ self.mapper.T_body_cam, stamp)
            except ValueError as exc:
                self.reject("depth/image", f"depth frame unusable for planning: {exc}")
        return self._frame

    # ------------------------------------------------------------------- cycle
    def plan_once(self, not_before: float | None = None) -> PlanResult | None:
        """One planning cycle at the clock's time, or at ``not_before`` (s) when the clock lags it (a
        depth frame can arrive before the /clock message of its own stamp)."""
        now = self.get_clock().now().nanoseconds * 1e-9
        if not_before is not None:
            now = max(now, not_before)
        if self._odom is None:
            self._publish_status({"status": "stale_odom", "reason": "no odometry received", "stamp": now})
            return None
        self._timer_plan_due = False
        odom_stamp, T, vel = self._odom
        state = VehicleState(pos=T[:3, 3], vel=vel, acc=np.zeros(3), yaw=rot_to_yaw(T[:3, :3]), stamp=odom_stamp)
        frame = self._depth_frame()
        try:
            with self.stage("esdf") as esdf_timer:
                esdf, esdf_cached = self.mapper.esdf_near(state.pos, self.half_extent,
                                                          self.param("esdf_max_distance_m"))
            guidance = self._current_guidance(state.pos, now)
            with self.stage("plan"):
                result = self.planner.plan(state, now, self.goal, esdf, frame, odom_stamp=odom_stamp,
                                           guidance=guidance)
        except ValueError as exc:  # e.g. a vehicle position far outside the map's index range
            # never leave the vehicle on its old command: brake (the planner without map or
            # depth input always returns its best brake primitive)
            self.get_logger().error(f"planning failed, braking: {exc}")
            brake = self.planner.plan(state, now, None, None, None, odom_stamp=odom_stamp)
            traj = restamp(brake.trajectory, now)
            self.traj_pub.publish(trajectory_to_msg(traj))
            self.path_pub.publish(trajectory_to_path_msg(traj))
            self.status_message = f"error: {exc}"
            self._publish_status({"status": "error", "reason": str(exc), "stamp": now, "braking": True})
            return None
        self.last_result = result
        traj = restamp(result.trajectory, now)
        traj_msg = trajectory_to_msg(traj)
        self.traj_pub.publish(traj_msg)
        if frame is not None and not_before is not None:  # a depth-triggered answer to this frame
            self._last_answer = (frame.stamp, traj_msg)
        # the visual outputs are built only for subscribers (thousands of points per cycle)
        if self.path_pub.get_subscription_count():
            self.path_pub.publish(trajectory_to_path_msg(traj))
        if self.markers_pub.get_subscription_count():
            self.markers_pub.publish(self.primitive_markers(result, make_header(now, "map")))
        self.status_message = f"{result.status.value}: {result.reason}"
        self._publish_status({
            "status": result.status.value, "reason": result.reason, "stamp": now,
            "depth_stamp": None if frame is None else frame.stamp,  # the depth frame planned on (s)
            "braking": result.braking, "index": result.index, "n_candidates": len(result.candidates),
            "n_feasible": int(result.collision.feasible.sum()),
            "goal": None if result.goal is None else result.goal.tolist(),
            "esdf_from_mapper": esdf_cached,
            "timings_ms": {"esdf": round(esdf_timer.ms, 3),
                           **{k: round(float(v), 3) for k, v in result.timings_ms.items()}},
        })
        return result

    def _current_guidance(self, pos: np.ndarray, now: float) -> GoalGuidance | None:
        """The goal guidance, rebuilt from the map every ``guidance_period_s`` (None without a goal)."""
        period = self.param("guidance_period_s")
        if self.goal is None or period <= 0:
            return None
        if self._guidance is None or not 0 <= now - self._guidance[0] < period:
            cfg = self.config
            low = cfg.min_altitude if cfg.min_altitude is not None else pos[2] - 2.0
            high = cfg.max_altitude if cfg.max_altitude is not None else pos[2] + 2.0
            band = (low, max(high, low + 1.0))
            with self.stage("guidance"):
                guidance = guidance_from_map(self.mapper.tsdf, pos, self.goal, cfg.robot_radius, band,
                                             2.0 * (cfg.robot_radius + cfg.margin))
            self._guidance = (now, guidance)
        return self._guidance[1]

    def _publish_status(self, status: dict) -> None:
        self.status_pub.publish(String(data=json.dumps(status)))

    def primitive_markers(self, result: PlanResult, header) -> MarkerArray:
        out = [Marker(header=header, ns="primitives", action=Marker.DELETEALL)]
        prims, feasible = result.candidates, result.collision.feasible
        for i in marker_indices(result, self.param("max_marker_primitives")):
            chosen = i == result.index
            m = Marker(header=header, ns="primitives", id=int(i), type=Marker.LINE_STRIP, action=Marker.ADD)
            m.pose.orientation.w = 1.0
            m.scale.x = 0.08 if chosen else 0.02
            m.color = _CHOSEN if chosen else (_GREEN if feasible[i] else _RED)
            m.points = [Point(x=x, y=y, z=z) for x, y, z in prims.pos[i].tolist()]
            out.append(m)
        return MarkerArray(markers=out)


def main(args=None) -> int:
    def compose(context):
        mapper_node = TsdfMapperNode(context=context)
        return [mapper_node, PrimitivePlannerNode(mapper_node.mapper, context=context)]

    return run_node(compose, args)


if __name__ == "__main__":
    sys.exit(main())
