"""Bag player node: replays a rosbag2 (MCAP or sqlite3) into the graph with /clock from the bag.

Messages are published as the raw CDR bytes stored in the bag (no decode /
re-encode, so subscribers get them bit-identical), on the bag's topic names made
relative (so ``__ns`` and ``--remap`` apply), with the publisher type resolved
from the bag's type name. Before each message ``/clock`` is set to its bag (log)
time; other nodes run with ``use_sim_time:=true``. ``rate`` scales playback
speed. With ``loop`` the bag restarts and the clock jumps back (logged). Pacing
uses a steady wall clock, so the player never waits on the clock it publishes.
Latched topics (``sim/world_spec``, ``sim/rig``) are published reliable and
transient-local, everything else reliable keep-last :data:`PLAYBACK_DEPTH` (reliable
publishers serve best-effort and reliable subscribers alike).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from rclpy.clock import Clock, ClockType
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock as ClockMsg

from depth_nodes.eval.bagio import BagSource
from depth_nodes.params import Param
from depth_nodes.ros.clock import CLOCK_QOS, CLOCK_TOPIC, LATCHED_QOS, clock_msg
from depth_nodes.ros.msg_convert import message_class
from depth_nodes.ros.node_base import BaseNode, run_node

NODE_NAME = "bag_player"

PARAMS = (
    Param("bag", "", "rosbag2 to play: a bag directory, .mcap or .db3 file (required)."),
    Param("rate", 1.0, "Playback speed factor (2.0 = twice real time).", 0.01, 100.0),
    Param("loop", False, "Restart from the beginning at the end (the clock jumps back)."),
    Param("topics", "", "Comma-separated bag topics to play; empty = every topic with a known type."),
    Param("start_offset_s", 0.0, "Skip this many seconds from the start of the bag.", 0.0, 1e6),
    Param("publish_clock", True, "Publish /clock from the bag time (a recorded /clock topic is then not replayed)."),
    Param("exit_at_end", True, "Shut the process down shortly after the last message (no loop), like ros2 bag play."),
    Param("latched_topics", "sim/world_spec,sim/rig",
          "Comma-separated topics published reliable + transient-local (latched)."),
)

#: History depth of the played streams.
PLAYBACK_DEPTH = 100
PLAYBACK_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=PLAYBACK_DEPTH,
                          reliability=ReliabilityPolicy.RELIABLE)
#: Wall seconds between the last message and shutting down (lets reliable queues drain).
EXIT_GRACE_S = 1.0
#: Wall period of the pacing timer (s).
POLL_S = 0.002
#: At most this many messages per timer callback (keeps the executor responsive).
MAX_BATCH = 200


def _csv(value: str) -> list[str]:
    return [t.strip() for t in value.split(",") if t.strip()]


def _relative(topic: str) -> str:
    return topic.strip().lstrip("/")


class BagPlayer(BaseNode):
    """Publishes a bag's messages at their recorded pace (scaled by ``rate``) and /clock."""

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, PARAMS, **kwargs)
        path = self.param("bag")
        if not path:
            raise ValueError("parameter bag must name a rosbag2 directory or file, got ''")
        if not Path(path).exists():
            raise ValueError(f"parameter bag: {path!r} does not exist")
        self.source = BagSource(path)
        known = self.source.topic_types
        wanted = _csv(self.param("topics"))
        missing = [t for t in wanted if t not in known]
        if missing:
            raise ValueError(f"parameter topics: {missing} not in bag (playable topics: {sorted(known)})")
        own_clock = self.param("publish_clock")
        if own_clock and any(_relative(t) == "clock" for t in wanted):
            raise ValueError("parameter topics names the bag's /clock while publish_clock is true; "
                             "set publish_clock:=false to replay the recorded clock")
        self.topics = wanted or sorted(t for t in known if not (own_clock and _relative(t) == "clock"))
        latched = {_relative(t) for t in _csv(self.param("latched_topics"))}
        self.pubs = {}
        for topic in self.topics:
            qos = LATCHED_QOS if _relative(topic) in latched else PLAYBACK_QOS
            self.pubs[topic] = self.create_publisher(message_class(known[topic]), _relative(topic), qos)
        self.pub_clock = self.create_publisher(ClockMsg, CLOCK_TOPIC, CLOCK_QOS) if own_clock else None
        info = self.source.info()
        self.rate = self.param("rate")
        self.loop = self.param("loop")
        self.start_ns = info.start_ns + int(round(self.param("start_offset_s") * 1e9))
        if info.message_count and self.start_ns > info.end_ns:
            raise ValueError(f"parameter start_offset_s={self.param('start_offset_s')} is past the bag's end "
                             f"({(info.end_ns - info.start_ns) * 1e-9:.3f} s long)")
        self.loops = 0
        self.published = 0
        self.finished = False
        self._restart()
        self.create_timer(POLL_S, self._tick, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.get_logger().info(f"playing {path} ({info.storage}, {len(self.topics)} topics, "
                               f"{info.message_count} messages) at rate {self.rate}")

    def _restart(self) -> None:
        self._iter = self.source.raw_messages(self.topics, start_ns=self.start_ns)
        self._next = next(self._iter, None)
        self._wall0 = time.monotonic()

    def _tick(self) -> None:
        if self.finished:
            return
        bag_now = self.start_ns + int((time.monotonic() - self._wall0) * self.rate * 1e9)
        for _ in range(MAX_BATCH):
            if self._next is None:
                self._end_of_bag()
                return
            topic, _, log_ns, raw = self._next
            if log_ns > bag_now:
                return
            if self.pub_clock is not None:
                self.pub_clock.publish(clock_msg(log_ns))
            self.pubs[topic].publish(raw)
            self.published += 1
            self._next = next(self._iter, None)

    def _end_of_bag(self) -> None:
        if not self.loop:
            self.finished = True
            self.status_message = "finished"
            self.get_logger().info(f"end of bag: published {self.published} messages")
            if self.param("exit_at_end"):
                self.create_timer(EXIT_GRACE_S, self._exit, clock=Clock(clock_type=ClockType.STEADY_TIME))
            return
        self.loops += 1
        self.get_logger().info(f"end of bag: looping (pass {self.loops + 1}); /clock jumps back to "
                               f"{self.start_ns * 1e-9:.3f} s")
        self._restart()

    def _exit(self) -> None:
        self.get_logger().info("exiting (exit_at_end)")
        self.context.try_shutdown()

    def diagnostics_values(self) -> dict[str, str]:
        values = super().diagnostics_values()
        values["published"] = str(self.published)
        values["loops"] = str(self.loops)
        return values


def main(args=None) -> int:
    return run_node(lambda context: BagPlayer(context=context), args)


if __name__ == "__main__":
    sys.exit(main())
