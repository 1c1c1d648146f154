"""Live simulator node: owns simulated time (/clock) and flies a drone along planner/trajectory.

Wraps :class:`depth_nodes.sim.stepper.SimStepper` (procedural world, sensor rig,
kinematic vehicle, odometry). Every message is stamped with simulated time,
which is also published on ``/clock``; the other nodes run with
``use_sim_time:=true``. The node itself steps on a steady wall-clock timer, so
it never waits on its own clock whatever its ``use_sim_time``.

Lockstep (default): after publishing a camera frame at sim time ``t`` the node
does not advance until a ``planner/trajectory`` stamped ``>= t`` (less 1 us of
float rounding slack) arrived (or
``lockstep_timeout_s`` of wall time passed: counted in diagnostics), so a run
does not depend on CPU speed. The answering trajectory resumes stepping at once,
one step per executor round up to the next camera frame (no fast polling while
waiting: it would take CPU from the nodes it waits for). Otherwise time advances
at ``realtime_factor``. In lockstep the first step also waits (at most
``lockstep_timeout_s``) until a ``planner/trajectory`` publisher is matched and
every subscription the ROS graph knows on the clock and sensor topics is
matched to this node's publisher, and then ``lockstep_start_settle_s`` more, so
no node misses the first frame (a best-effort message is lost to a subscriber
whose side has not matched this publisher yet). A frame still unanswered after
``LOCKSTEP_RETRY_S`` is published again, identically, every ``LOCKSTEP_RETRY_S``
until the answer or the timeout (counted in diagnostics as ``frame_repeats``): a
node that lost it gets it, the others ignore an exact repeat of what they have,
and the planner answers it with its plan again (its answer may be what was lost).

Publishes: camera/image_raw + camera/camera_info, stereo/{left,right}/image_rect +
camera_info, radar/points, odom (map -> base_link, body twist), ground_truth/depth,
ground_truth/odom, sim/world_spec (JSON, latched), goal_pose (latched),
sim/collision (Bool, latched), sim/status (JSON: t, pos, collided, reached_goal,
distance_to_goal, latched). Subscribes: planner/trajectory.
"""
from __future__ import annotations

import json
import math
import sys
import time

import numpy as np
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Odometry
from rclpy.clock import Clock, ClockType
from rosgraph_msgs.msg import Clock as ClockMsg
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Bool, String
from trajectory_msgs.msg import MultiDOFJointTrajectory

from depth_nodes.codec import stamp_to_ns
from depth_nodes.geometry import make_pose
from depth_nodes.params import Param
from depth_nodes.ros.clock import CLOCK_QOS, CLOCK_TOPIC, LATCHED_QOS, clock_msg, ns_to_time
from depth_nodes.ros.conversions import (
    array_to_image_msg,
    pinhole_to_camera_info_msg,
    pose_to_odometry_msg,
    pose_to_pose_stamped_msg,
    xyz_to_cloud_msg,
)
from depth_nodes.ros.conversions_traj import trajectory_msg_to_trajectory
from depth_nodes.ros.node_base import SENSOR_QOS, BaseNode, run_node
from depth_nodes.sim.radar import FIELDS as RADAR_FIELDS
from depth_nodes.sim.rig import SensorRig
from depth_nodes.sim.stepper import SimSample, SimStepper
from depth_nodes.sim.vehicle import Vehicle
from depth_nodes.sim.world import KINDS, WorldSpec, build_world

NODE_NAME = "sim_node"

PARAMS = (
    Param("world", "forest", "Procedural world type.", choices=KINDS),
    Param("seed", 7, "World and sensor-noise seed.", 0, 2**31 - 1),
    Param("density", "medium", "Obstacle density: sparse, medium or dense.", choices=("sparse", "medium", "dense")),
    Param("extent_m", [0.0, 0.0], "World (length along +x, width along y) in metres; [0, 0] = the kind's default."),
    Param("camera_rate_hz", 10.0, "Camera (and stereo, ground-truth depth) frame rate (Hz).", 0.5, 100.0),
    Param("radar_rate_hz", 10.0, "Radar scan rate (Hz).", 0.5, 100.0),
    Param("odom_rate_hz", 50.0, "Odometry rate = simulation step rate (Hz).", 5.0, 500.0),
    Param("image_width", 320, "Camera image width (pixels).", 32, 1920),
    Param("image_height", 240, "Camera image height (pixels).", 24, 1080),
    Param("hfov_deg", 90.0, "Camera horizontal field of view (degrees).", 30.0, 150.0),
    Param("publish_stereo", True, "Publish stereo/left|right image_rect and camera_info."),
    Param("publish_radar", True, "Publish radar/points."),
    Param("publish_gt", True, "Publish ground_truth/depth and ground_truth/odom."),
    Param("max_speed_mps", 4.0, "Vehicle speed limit (m/s).", 0.1, 20.0),
    Param("max_acc_mps2", 4.0, "Vehicle acceleration limit (m/s^2).", 0.1, 30.0),
    Param("vehicle_radius_m", 0.25, "Collision radius of the vehicle (m).", 0.05, 2.0),
    Param("lockstep", True, "Wait for a planner/trajectory stamped at or after each camera frame before advancing."),
    Param("lockstep_timeout_s", 2.0, "Wall-clock seconds to wait for the planner in lockstep before advancing anyway.",
          0.001, 60.0),
    Param("lockstep_start_settle_s", 1.0, "In lockstep, wall seconds between every known subscriber being matched "
          "and the first frame: a subscriber's side of a match can lag this node's, and a first frame it misses "
          "stalls lockstep for lockstep_timeout_s.", 0.0, 10.0),
    Param("realtime_factor", 1.0, "Simulated seconds per wall second when not in lockstep.", 0.01, 100.0),
    Param("max_duration_s", 0.0, "Stop after this much simulated time (s); 0 = no limit.", 0.0, 86400.0),
    Param("goal_from_world", True, "Use the world's goal; false: use goal_xyz."),
    Param("goal_xyz", [0.0, 0.0, 1.5], "Goal position in map (m) when goal_from_world is false."),
    Param("goal_tolerance_m", 1.0, "Arrival when the vehicle is this close to the goal (m).", 0.05, 20.0),
    Param("on_end", "stop", "After arrival, collision or max_duration_s: stop time, or keep hovering.",
          choices=("stop", "hover")),
)

#: Wall period of the stepping timer while in lockstep (s): how often a wait is checked for its timeout
#: (an answering trajectory resumes stepping from its own callback).
LOCKSTEP_POLL_S = 0.01
#: Lockstep: wall seconds without an answer to a camera frame before it is published again.
LOCKSTEP_RETRY_S = 1.0
#: A trajectory stamped this little before a frame still answers it (float-second stamps
#: near 1.7e9 s carry ~0.2 us of rounding), nanoseconds.
LOCKSTEP_SLACK_NS = 1000


def _xyz_param(value, name: str) -> np.ndarray:
    v = np.asarray(value, dtype=np.float64).reshape(-1)
    if v.shape != (3,) or not np.all(np.isfinite(v)):
        raise ValueError(f"parameter {name} must be 3 finite numbers, got {list(value)}")
    return v


class SimNode(BaseNode):
    """Publishes simulated sensors and /clock; moves the vehicle along the newest planner trajectory."""

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, PARAMS, **kwargs)
        p = self.param
        self.world = build_world(WorldSpec.from_params(p("world"), p("seed"), p("density"), p("extent_m")))
        self.goal = self.world.goal if p("goal_from_world") else _xyz_param(p("goal_xyz"), "goal_xyz")
        self.rig = SensorRig.with_size(p("image_width"), p("image_height"), p("hfov_deg"),
                                       camera_rate_hz=p("camera_rate_hz"), radar_rate_hz=p("radar_rate_hz"),
                                       odom_rate_hz=p("odom_rate_hz"))
        d = self.goal - self.world.start
        vehicle = Vehicle(self.world, self.world.start, yaw=math.atan2(d[1], d[0]), max_vel=p("max_speed_mps"),
                          max_acc=p("max_acc_mps2"), radius=p("vehicle_radius_m"))
        self.sim = SimStepper(self.world, vehicle, self.rig, seed=p("seed"), stereo=p("publish_stereo"),
                              radar=p("publish_radar"))
        self.lockstep, self.timeout_s = p("lockstep"), p("lockstep_timeout_s")
        self.tolerance, self.on_end, self.max_duration = p("goal_tolerance_m"), p("on_end"), p("max_duration_s")
        self.publish_gt = p("publish_gt")
        self.lockstep_timeouts = 0
        self.ended: str | None = None        # "reached_goal" | "collided" | "max_duration"
        # lockstep, while a camera frame awaits its answer: (wall time first sent, wall time last sent, the frame)
        self._wait: tuple[float, float, SimSample] | None = None
        self._newest_traj_ns = -1

        pub = self.create_publisher
        self.pub_clock = pub(ClockMsg, CLOCK_TOPIC, CLOCK_QOS)
        self.pub_image = pub(Image, "camera/image_raw", SENSOR_QOS)
        self.pub_info = pub(CameraInfo, "camera/camera_info", SENSOR_QOS)
        self.pub_stereo = []
        if p("publish_stereo"):
            self.pub_stereo = [(pub(Image, f"stereo/{s}/image_rect", SENSOR_QOS),
                                pub(CameraInfo, f"stereo/{s}/camera_info", SENSOR_QOS)) for s in ("left", "right")]
        self.pub_radar = pub(PointCloud2, "radar/points", SENSOR_QOS) if p("publish_radar") else None
        self.pub_odom = pub(Odometry, "odom", SENSOR_QOS)
        if self.publish_gt:
            self.pub_gt_depth = pub(Image, "ground_truth/depth", SENSOR_QOS)
            self.pub_gt_odom = pub(Odometry, "ground_truth/odom", SENSOR_QOS)
        self.pub_collision = pub(Bool, "sim/collision", LATCHED_QOS)
        self.pub_status = pub(String, "sim/status", LATCHED_QOS)
        self.pub_spec = pub(String, "sim/world_spec", LATCHED_QOS)
        self.pub_goal = pub(PoseStamped, "goal_pose", LATCHED_QOS)
        self._stream_pubs = [self.pub_clock, self.pub_image, self.pub_info, self.pub_odom]
        self._stream_pubs += [x for pair in self.pub_stereo for x in pair]
        self._stream_pubs += [self.pub_radar] if self.pub_radar is not None else []
        self._stream_pubs += [self.pub_gt_depth, self.pub_gt_odom] if self.publish_gt else []
        self._traj_sub = self.create_subscription(MultiDOFJointTrajectory, "planner/trajectory",
                                                  self._on_trajectory, 10)
        self._created = time.monotonic()
        self._matched_since: float | None = None  # lockstep start: wall time all subscribers were matched
        self.frame_repeats = 0

        t0 = ns_to_time(self.sim.time_ns())
        self.pub_spec.publish(String(data=self.world.spec.to_json()))
        self.pub_goal.publish(pose_to_pose_stamped_msg(make_pose(None, self.goal), stamp=t0, frame_id="map"))
        self.pub_collision.publish(Bool(data=False))
        self._resume = self.create_guard_condition(self._on_resume)
        self._resume_pending = False
        period = LOCKSTEP_POLL_S if self.lockstep else self.sim.dt / p("realtime_factor")
        self.create_timer(period, self._on_timer, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.get_logger().info(
            f"world {self.world.spec.to_json()}, start {np.round(self.world.start, 2).tolist()}, "
            f"goal {np.round(self.goal, 2).tolist()}, lockstep={self.lockstep}")

    # -- inputs ----------------------------------------------------------------
    def _on_trajectory(self, msg: MultiDOFJointTrajectory) -> None:
        topic = "planner/trajectory"
        if msg.header.frame_id not in ("map", ""):
            self.reject(topic, f"frame_id {msg.header.frame_id!r} is not 'map' (no tf: trajectories must be in map)")
            return
        try:
            traj = trajectory_msg_to_trajectory(msg)
            stamp_ns = stamp_to_ns(msg.header.stamp)
        except ValueError as exc:
            self.reject(topic, str(exc))
            return
        if stamp_ns < self._newest_traj_ns:
            self.reject(topic, f"stamp {stamp_ns} ns is older than the newest trajectory ({self._newest_traj_ns} ns)")
            return
        self.received(topic)
        self._newest_traj_ns = stamp_ns
        if self.ended is None:
            self.sim.follow(traj)
        if self._wait is not None:
            self._step_soon()

    # -- stepping --------------------------------------------------------------
    def _step_soon(self) -> None:
        """Lockstep: take the next step in the next executor round (one step per round, like the timer)."""
        if not self._resume_pending:
            self._resume_pending = True
            self._resume.trigger()

    def _on_resume(self) -> None:
        self._resume_pending = False
        self._tick()

    def _on_timer(self) -> None:
        if self.lockstep and self.sim.k == 0 and self._wait is None and not self._ready_to_start():
            return  # lockstep start: the planner or a subscriber is not matched yet
        if not self._resume_pending:  # lockstep: the resume chain is stepping already
            self._tick()

    def _ready_to_start(self) -> bool:
        """Lockstep start: matched (see :meth:`_graph_matched`) for lockstep_start_settle_s, or never matched
        within lockstep_timeout_s (start anyway)."""
        now = time.monotonic()
        if not self._graph_matched():
            self._matched_since = None
            return now - self._created >= self.timeout_s
        if self._matched_since is None:
            self._matched_since = now
        return now - self._matched_since >= self.param("lockstep_start_settle_s")

    def _graph_matched(self) -> bool:
        """A planner/trajectory publisher is matched, and so is every known subscription on our streams."""
        if self._traj_sub.get_publisher_count() == 0:
            return False
        return all(p.get_subscription_count() >= self.count_subscribers(p.topic_name) for p in self._stream_pubs)

    def _tick(self) -> None:
        if self.ended is not None and self.on_end == "stop":
            return
        if self._wait is not None:
            since, sent, frame = self._wait
            if self._newest_traj_ns < frame.t_ns - LOCKSTEP_SLACK_NS:
                now = time.monotonic()
                if now - since < self.timeout_s:
                    if now - sent >= LOCKSTEP_RETRY_S:
                        self._publish(frame)  # a node may have lost it: the same messages again
                        self._wait = (since, now, frame)
                        self.frame_repeats += 1
                    return
                self.lockstep_timeouts += 1
            self._wait = None
            self.sim.advance()
        with self.stage("step"):
            s = self.sim.sample()
            self._publish(s)
        self._check_end()
        if self.ended is not None and self.on_end == "stop":
            return
        if self.lockstep and s.camera:
            now = time.monotonic()
            self._wait = (now, now, s)
        else:
            self.sim.advance()
            if self.lockstep:
                self._step_soon()

    def _publish(self, s: SimSample) -> None:
        stamp = ns_to_time(s.t_ns)
        self.pub_clock.publish(clock_msg(s.t_ns))
        twist = np.concatenate([s.v_odom, s.w_body])
        self.pub_odom.publish(pose_to_odometry_msg(s.T_odom, twist, stamp=stamp, frame_id="map"))
        if self.publish_gt:
            gt_twist = np.concatenate([s.v_body, s.w_body])
            self.pub_gt_odom.publish(pose_to_odometry_msg(s.T_world_body, gt_twist, stamp=stamp, frame_id="map"))
        fr, cam = s.frame, self.rig.camera
        if s.camera:
            # camera infos before images: consumers keep the newest info and reject images before one
            self.pub_info.publish(pinhole_to_camera_info_msg(cam, stamp=stamp))
            if fr.right is not None:
                for (_, pub_info), c in zip(self.pub_stereo, (cam, self.rig.right_camera)):
                    pub_info.publish(pinhole_to_camera_info_msg(c, stamp=stamp))
            self.pub_image.publish(array_to_image_msg(fr.rgb, "rgb8", stamp=stamp, frame_id=cam.frame_id))
            if fr.right is not None:
                for (pub_img, _), img, c in zip(self.pub_stereo, (fr.rgb, fr.right), (cam, self.rig.right_camera)):
                    pub_img.publish(array_to_image_msg(img, "rgb8", stamp=stamp, frame_id=c.frame_id))
            if self.publish_gt:
                self.pub_gt_depth.publish(array_to_image_msg(fr.depth, "32FC1", stamp=stamp, frame_id=cam.frame_id))
            self._publish_status()
        if s.radar and fr.radar is not None:
            pts = fr.radar.points
            extra = {name: pts[:, i] for i, name in enumerate(RADAR_FIELDS[3:], start=3)}
            self.pub_radar.publish(xyz_to_cloud_msg(pts[:, :3], extra, stamp=stamp, frame_id="radar"))

    def _publish_status(self) -> None:
        status = self.sim.status(self.goal, self.tolerance)
        status["ended"] = self.ended
        self.pub_status.publish(String(data=json.dumps(status)))

    def _check_end(self) -> None:
        if self.ended is not None:
            return
        status = self.sim.status(self.goal, self.tolerance)
        if status["collided"]:
            self.ended = "collided"
            self.pub_collision.publish(Bool(data=True))
        elif status["reached_goal"]:
            self.ended = "reached_goal"
        elif self.max_duration > 0 and status["t"] >= self.max_duration:
            self.ended = "max_duration"
        if self.ended is None:
            return
        self.sim.vehicle.trajectory = None  # brake to hover from now on
        self.status_message = f"ended: {self.ended}"
        self._publish_status()
        self.get_logger().info(f"episode ended ({self.ended}) at t={status['t']:.2f} s, "
                               f"pos {np.round(status['pos'], 2).tolist()}, "
                               f"distance to goal {status['distance_to_goal']:.2f} m")

    def diagnostics_values(self) -> dict[str, str]:
        values = super().diagnostics_values()
        values["lockstep_timeouts"] = str(self.lockstep_timeouts)
        values["frame_repeats"] = str(self.frame_repeats)
        values["sim_time_s"] = f"{self.sim.k * self.sim.dt:.3f}"
        return values


def main(args=None) -> int:
    return run_node(lambda context: SimNode(context=context), args)


if __name__ == "__main__":
    sys.exit(main())
