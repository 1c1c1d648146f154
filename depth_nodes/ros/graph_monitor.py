"""GraphMonitor: watches a running mav_nav graph from outside (tests, `depth-nodes bench pipeline`).

Subscribes the graph's outputs with the QoS their publishers use and records,
per topic, the wall receive times (``time.monotonic()`` seconds), the header
stamps (simulated seconds), publish times and frame ids; keeps the newest ``sim/status`` and
``diagnostics`` of every node, and every ``planner/status``. The end-to-end
latency of a depth frame is the publish time of the first trajectory planned on
it minus the publish time of its camera frame (DDS source timestamps, matched by
sim stamp via the ``depth_stamp`` the planner puts in ``planner/status``).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.subscription import MessageInfo
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import String
from trajectory_msgs.msg import MultiDOFJointTrajectory

from depth_nodes.codec import stamp_to_ns
from depth_nodes.ros.node_base import SENSOR_QOS

_LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
_RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def stamp_key(stamp_s: float) -> int:
    """Sim stamp (s) -> integer milliseconds, robust to float rounding of stamps near 1.7e9 s."""
    return int(round(stamp_s * 1000.0))


@dataclass
class TopicLog:
    """What arrived on one topic: wall receive and publish times (s), header stamps (s), frame ids."""

    wall_s: list[float] = field(default_factory=list)
    published_s: list[float] = field(default_factory=list)  # publisher's send time (DDS source timestamp, s)
    stamp_s: list[float] = field(default_factory=list)
    frame_ids: set[str] = field(default_factory=set)

    @property
    def count(self) -> int:
        return len(self.wall_s)

    def wall_rate_hz(self) -> float:
        """Mean receive rate over the span between the first and last message (Hz); 0 below 2 messages."""
        span = self.wall_s[-1] - self.wall_s[0] if self.count > 1 else 0.0
        return (self.count - 1) / span if span > 0 else 0.0

    def stamp_rate_hz(self) -> float:
        """Mean rate in stamp (simulated) time (Hz); 0 below 2 messages."""
        span = max(self.stamp_s) - min(self.stamp_s) if self.count > 1 else 0.0
        return (self.count - 1) / span if span > 0 else 0.0


class GraphMonitor(Node):
    """Records the outputs of a running graph; ``depth_topic`` is depth/image or ground_truth/depth."""

    #: camera/camera_info, not the image: same stamp, published just before it, and light enough
    #: that a busy monitor does not lose frames (the camera stream is best effort)
    STREAMS = {"camera/camera_info": CameraInfo, "odom": Odometry, "map/points": PointCloud2,
               "planner/trajectory": MultiDOFJointTrajectory}

    def __init__(self, depth_topic: str = "depth/image", watch_map_and_odom: bool = True, **kwargs):
        """``watch_map_and_odom=False`` skips the two heavy/fast streams (a benchmark's monitor must not lag)."""
        super().__init__("graph_monitor", **kwargs)
        self.logs: dict[str, TopicLog] = {}
        self.child_frame_ids: set[str] = set()
        self.sim_status: dict | None = None
        self.plan_status: list[tuple[float, dict]] = []    # (wall receive time, status)
        self.diagnostics: dict[str, dict[str, str]] = {}    # node name -> newest key/values
        self.diagnostics_wall: dict[str, float] = {}         # node name -> when those arrived (monotonic s)
        qos = {"planner/trajectory": _RELIABLE, "map/points": _RELIABLE}
        streams = {**self.STREAMS, depth_topic: Image}
        if not watch_map_and_odom:
            del streams["map/points"], streams["odom"]
        for topic, msg_type in streams.items():
            self.create_subscription(msg_type, topic, self._recorder(topic), qos.get(topic, SENSOR_QOS))
        self.create_subscription(String, "sim/status", self._on_sim_status, _LATCHED)
        self.create_subscription(String, "planner/status", self._on_plan_status, _RELIABLE)
        self.create_subscription(DiagnosticArray, "diagnostics", self._on_diagnostics, 50)

    def log(self, topic: str) -> TopicLog:
        return self.logs.setdefault(topic, TopicLog())

    def _recorder(self, topic: str):
        def record(msg, info: MessageInfo) -> None:
            entry = self.log(topic)
            entry.wall_s.append(time.monotonic())
            entry.published_s.append(info["source_timestamp"] * 1e-9)
            entry.stamp_s.append(stamp_to_ns(msg.header.stamp) * 1e-9)
            entry.frame_ids.add(msg.header.frame_id)
            if isinstance(msg, Odometry):
                self.child_frame_ids.add(msg.child_frame_id)
        return record

    def _on_sim_status(self, msg: String) -> None:
        self.sim_status = json.loads(msg.data)

    def _on_plan_status(self, msg: String) -> None:
        self.plan_status.append((time.monotonic(), json.loads(msg.data)))

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            self.diagnostics[status.name] = {kv.key: kv.value for kv in status.values}
            self.diagnostics_wall[status.name] = time.monotonic()

    def ended(self) -> bool:
        return bool(self.sim_status and self.sim_status.get("ended"))

    def e2e_latencies_ms(self) -> list[float]:
        """Camera frame (its camera_info) published -> first trajectory planned on it published (ms).

        Publish times are the DDS source timestamps (publisher's system clock,
        one machine), so a busy monitor does not add its own delay."""
        cam = self.log("camera/camera_info")
        camera = dict(zip(map(stamp_key, cam.stamp_s), cam.published_s))
        traj = self.log("planner/trajectory")
        traj_wall = dict(zip(map(stamp_key, traj.stamp_s), traj.published_s))
        out, seen = [], set()
        for _, status in self.plan_status:
            depth_stamp = status.get("depth_stamp")
            if depth_stamp is None:
                continue
            key = stamp_key(depth_stamp)
            t_traj = traj_wall.get(stamp_key(status["stamp"]))
            if key in seen or key not in camera or t_traj is None:
                continue
            seen.add(key)
            out.append((t_traj - camera[key]) * 1e3)
        return out
