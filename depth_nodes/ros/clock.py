"""Simulated-time publication shared by the nodes that own /clock (sim_node, bag_player).

``/clock`` (rosgraph_msgs/Clock, absolute name) drives every node started with
``use_sim_time:=true``. Times are integer nanoseconds.
"""
from __future__ import annotations

from builtin_interfaces.msg import Time
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock

#: The clock topic (absolute: not namespaced, like rclpy's TimeSource expects).
CLOCK_TOPIC = "/clock"
CLOCK_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
#: Latched low-rate topics (world spec, goal, status): reliable, transient local, last one kept.
LATCHED_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)


def ns_to_time(t_ns: int) -> Time:
    """Integer nanoseconds -> builtin_interfaces/Time."""
    t_ns = int(t_ns)
    return Time(sec=t_ns // 1_000_000_000, nanosec=t_ns % 1_000_000_000)


def clock_msg(t_ns: int) -> Clock:
    """rosgraph_msgs/Clock at ``t_ns`` nanoseconds."""
    return Clock(clock=ns_to_time(t_ns))
