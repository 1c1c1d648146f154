"""Bag recorder node: writes chosen topics to a rosbag2 (MCAP or sqlite3) as raw CDR.

Subscriptions are raw (``raw=True``): the serialised bytes DDS delivers are
written unchanged through :meth:`depth_nodes.eval.bagio.BagSink.write_raw`, so a
recording is bit-faithful and costs no decode. The log time of each message is
the node clock at reception (simulated time under ``use_sim_time:=true``).

A topic's type comes from the ``types`` parameter (then it is subscribed at
once, best effort, which matches any publisher) or is discovered from the
graph; a discovered topic is subscribed with QoS matching its publishers
(reliable / transient-local when all of them are, so latched topics such as
``sim/world_spec`` are recorded too). The bag is finalised on shutdown.
"""
from __future__ import annotations

import signal
import sys
from pathlib import Path

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from depth_nodes.eval.bagio import BagSink
from depth_nodes.params import Param
from depth_nodes.ros.msg_convert import message_class
from depth_nodes.ros.node_base import BaseNode, run_node

NODE_NAME = "bag_recorder"

PARAMS = (
    Param("topics", "", "Comma-separated topics to record (required), e.g. 'odom,camera/image_raw'."),
    Param("types", "", "Comma-separated message types matching topics (e.g. 'nav_msgs/msg/Odometry'); "
          "empty = discover each topic's type from the graph."),
    Param("output", "", "Bag directory to create (required; must not exist)."),
    Param("storage", "mcap", "Bag storage format.", choices=("mcap", "sqlite3")),
    Param("discovery_period_s", 0.5, "How often not-yet-subscribed topics are looked up in the graph (s).",
          0.05, 10.0),
    Param("queue_depth", 100, "Subscription history depth.", 1, 10000),
)


def _csv(value: str) -> list[str]:
    return [t.strip() for t in value.split(",") if t.strip()]


class BagRecorder(BaseNode):
    """Subscribes raw to ``topics`` and writes every message to ``output``."""

    def __init__(self, **kwargs):
        self.sink: BagSink | None = None
        super().__init__(NODE_NAME, PARAMS, **kwargs)
        self.topics = _csv(self.param("topics"))
        types = _csv(self.param("types"))
        output = self.param("output")
        if not self.topics:
            raise ValueError("parameter topics must name at least one topic, got ''")
        if len(set(self.topics)) != len(self.topics):
            raise ValueError(f"parameter topics has duplicates: {self.topics}")
        if types and len(types) != len(self.topics):
            raise ValueError(f"parameter types must be empty or list one type per topic: "
                             f"{len(types)} types for {len(self.topics)} topics")
        if not output:
            raise ValueError("parameter output must name the bag directory to create, got ''")
        if Path(output).exists():
            raise ValueError(f"parameter output: {output!r} already exists; refusing to overwrite")
        for t in types:
            message_class(t)  # ValueError for an unknown type
        self.sink = BagSink(output, self.param("storage")).open()
        try:
            self.depth = self.param("queue_depth")
            self.subscriptions_by_topic: dict[str, object] = {}
            for topic, typ in zip(self.topics, types):
                self._subscribe(topic, typ, ReliabilityPolicy.BEST_EFFORT, DurabilityPolicy.VOLATILE)
            self.create_timer(self.param("discovery_period_s"), self._discover)
            self._discover()
        except BaseException:
            # a signal can shut the context down while the node is still being built (the
            # executable then has no node to destroy): the bag opened above must still be finalised
            self.close()
            raise
        self.get_logger().info(f"recording {self.topics} to {output} ({self.param('storage')})")

    def _subscribe(self, topic: str, typ: str, reliability, durability) -> None:
        msgtype = typ if "/msg/" in typ else typ.replace("/", "/msg/", 1)
        self.sink.add_topic(topic, msgtype, latched=durability == DurabilityPolicy.TRANSIENT_LOCAL)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self.depth, reliability=reliability,
                         durability=durability)
        self.subscriptions_by_topic[topic] = self.create_subscription(
            message_class(msgtype), topic, lambda raw, t=topic: self._on_message(t, raw), qos, raw=True)
        self.get_logger().info(f"recording {topic} ({msgtype})")

    def _discover(self) -> None:
        for topic in self.topics:
            if topic in self.subscriptions_by_topic:
                continue
            infos = self.get_publishers_info_by_topic(self.resolve_topic_name(topic))
            if not infos:
                continue
            kinds = sorted({i.topic_type for i in infos})
            if len(kinds) > 1:
                self.reject(topic, f"publishers disagree on the type: {kinds}")
                continue
            reliable = all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos)
            latched = all(i.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for i in infos)
            try:
                self._subscribe(topic, kinds[0],
                                ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                                DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)
            except ValueError as exc:
                self.reject(topic, str(exc))

    def _on_message(self, topic: str, raw: bytes) -> None:
        if self.sink is None:
            return
        try:
            self.sink.write_raw(topic, max(0, self.get_clock().now().nanoseconds), raw)
        except ValueError as exc:
            self.reject(topic, str(exc))
            return
        self.received(topic)

    def close(self) -> dict[str, int]:
        """Finalise the bag (idempotent); returns the message count per topic."""
        counts = dict(self.sink.counts) if self.sink is not None else {}
        if self.sink is not None:
            sink, self.sink = self.sink, None
            sink.close()
            self.get_logger().info(f"closed {sink.path}: {counts}")
        return counts

    def diagnostics_values(self) -> dict[str, str]:
        values = super().diagnostics_values()
        if self.sink is not None:
            for topic, n in self.sink.counts.items():
                values[f"recorded/{topic}"] = str(n)
        return values

    def destroy_node(self) -> None:
        self.close()
        super().destroy_node()


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(args=None) -> int:
    # SIGTERM (how launchers stop nodes) must unwind through run_node so the bag is finalised;
    # installed before rclpy.init, rclpy's own handler chains to it.
    signal.signal(signal.SIGTERM, _interrupt)
    return run_node(lambda context: BagRecorder(context=context), args)


if __name__ == "__main__":
    sys.exit(main())
