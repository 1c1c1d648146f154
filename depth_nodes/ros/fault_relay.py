"""fault_relay: forwards the simulator's sensor streams, injecting scheduled faults (issue #9).

Sits between sim_node (its sensor topics remapped to ``<input_prefix>/...``)
and the consumers: subscribes ``sim_raw/camera/image_raw``, ``.../camera_info``,
``.../ground_truth/depth``, ``.../radar/points`` and ``.../odom`` and
republishes each on the normal name, applying the fault active at the
message's stamp (simulated seconds) from the ``schedule`` parameter (JSON list
of ``{name, start_s, duration_s}`` naming faults of
:data:`depth_nodes.eval.faults.FAULTS`): drop, corrupt the image payload,
shift the stamp, or forward 5 copies (burst). The fault logic lives in
:mod:`depth_nodes.eval.faults`; this node only moves fields in and out.
"""
from __future__ import annotations

import sys
from array import array

import numpy as np
from nav_msgs.msg import Odometry
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from depth_nodes.codec import stamp_to_ns
from depth_nodes.eval.faults import Fault, ImagePayload, burst_stamps_ns, schedule_from_json, shift_stamp_ns
from depth_nodes.params import Param
from depth_nodes.ros.clock import ns_to_time
from depth_nodes.ros.node_base import SENSOR_QOS, BaseNode, run_node

NODE_NAME = "fault_relay"

PARAMS: tuple[Param, ...] = (
    Param("input_prefix", "sim_raw", "Namespace prefix of the relayed inputs (the simulator's remapped outputs)."),
    Param("schedule", "", "Faults to inject: JSON list of {name, start_s, duration_s} (simulated seconds of the "
          "message stamps); '' forwards everything unchanged."),
)

#: Message type of every relayed topic.
TOPIC_TYPES = {"camera/image_raw": Image, "camera/camera_info": CameraInfo, "ground_truth/depth": Image,
               "radar/points": PointCloud2, "odom": Odometry}
#: Period assumed for a burst before two messages of a topic were seen (s).
DEFAULT_PERIOD_S = 0.1


def payload_of(msg: Image) -> ImagePayload:
    return ImagePayload(msg.height, msg.width, msg.step, msg.encoding, msg.is_bigendian,
                        np.frombuffer(memoryview(msg.data), dtype=np.uint8))


def apply_payload(msg: Image, p: ImagePayload) -> None:
    data = array("B")
    data.frombytes(np.ascontiguousarray(p.data).tobytes())
    msg.height, msg.width, msg.step, msg.encoding, msg.is_bigendian = p.height, p.width, p.step, p.encoding, \
        p.is_bigendian
    msg.data = data


class FaultRelay(BaseNode):
    """Republishes ``<input_prefix>/<topic>`` on ``<topic>`` with the scheduled faults applied."""

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, PARAMS, **kwargs)
        self.schedule: list[Fault] = schedule_from_json(self.param("schedule"))
        prefix = self.param("input_prefix").strip("/")
        if not prefix:
            raise ValueError("parameter input_prefix must not be empty (the relay would feed itself)")
        self.counts = {k: 0 for k in ("forwarded", "dropped", "corrupted", "restamped", "burst_copies")}
        self._last_ns: dict[str, int] = {}
        self._period_ns: dict[str, int] = {}
        for topic, msg_type in TOPIC_TYPES.items():
            pub = self.create_publisher(msg_type, topic, SENSOR_QOS)
            self.create_subscription(msg_type, f"{prefix}/{topic}", self._relay(topic, pub), SENSOR_QOS)
        names = ", ".join(f"{f.name}@{f.start_s:.2f}s+{f.duration_s:.1f}s" for f in self.schedule) or "none"
        self.get_logger().info(f"relaying {prefix}/* -> *, faults: {names}")

    def active_fault(self, t_s: float, topic: str) -> Fault | None:
        return next((f for f in self.schedule if f.active(t_s, topic)), None)

    def _relay(self, topic: str, pub):
        def forward(msg) -> None:
            self.received(topic)
            stamp_ns = stamp_to_ns(msg.header.stamp)
            last = self._last_ns.get(topic)
            if last is not None and stamp_ns > last:
                self._period_ns[topic] = stamp_ns - last
            self._last_ns[topic] = stamp_ns
            fault = self.active_fault(stamp_ns * 1e-9, topic)
            action = fault.action if fault is not None else None
            if action == "drop":
                self.counts["dropped"] += 1
                return
            if action == "corrupt":
                apply_payload(msg, fault.corrupt(payload_of(msg)))
                self.counts["corrupted"] += 1
            elif action == "restamp":
                msg.header.stamp = ns_to_time(shift_stamp_ns(stamp_ns, fault.stamp_offset_s))
                self.counts["restamped"] += 1
            elif action == "burst":
                period_s = self._period_ns.get(topic, int(DEFAULT_PERIOD_S * 1e9)) * 1e-9
                for t_ns in burst_stamps_ns(stamp_ns, period_s)[:-1]:
                    msg.header.stamp = ns_to_time(t_ns)
                    pub.publish(msg)
                    self.counts["burst_copies"] += 1
                msg.header.stamp = ns_to_time(stamp_ns)
            pub.publish(msg)
            self.counts["forwarded"] += 1
        return forward

    def diagnostics_values(self) -> dict[str, str]:
        values = super().diagnostics_values()
        values.update({f"relay_{k}": str(v) for k, v in self.counts.items()})
        return values


def main(args=None) -> int:
    return run_node(lambda context: FaultRelay(context=context), args)


if __name__ == "__main__":
    sys.exit(main())
