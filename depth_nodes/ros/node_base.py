"""Common base for depth_nodes nodes: declared parameters, rejection handling, diagnostics.

A node built on ``BaseNode`` gets
* its ``params`` (plus ``depth_nodes.params.COMMON``) declared with description and
  range, readable as ``self.param("name")``;
* ``self.reject(topic, reason)``: counts a rejected input and logs it at most
  once per ``reject_log_period_s`` per topic;
* a ``diagnostics`` publication (diagnostic_msgs/DiagnosticArray) with input rates,
  per-stage latencies and rejection counts;
* sensor-data QoS for streams (best effort, keep last, small depth).
"""
from __future__ import annotations

import sys
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

from depth_nodes.params import Param, with_common
from depth_nodes.telemetry import LatencyStats, RateMeter, RejectionLog, StageTimer

#: Streams: a late frame is dropped, never queued behind newer ones.
#: GIL switch interval of a process hosting several nodes (s; CPython's default is 0.005).
COMPOSED_SWITCH_INTERVAL_S = 0.0005
SENSOR_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2, reliability=ReliabilityPolicy.BEST_EFFORT)


def descriptor(p: Param) -> ParameterDescriptor:
    d = ParameterDescriptor(description=p.description)
    if isinstance(p.default, float) and (p.min is not None or p.max is not None):
        d.floating_point_range = [FloatingPointRange(
            from_value=float(p.min if p.min is not None else -1e308),
            to_value=float(p.max if p.max is not None else 1e308), step=0.0)]
    elif isinstance(p.default, int) and not isinstance(p.default, bool) and (p.min is not None or p.max is not None):
        d.integer_range = [IntegerRange(
            from_value=int(p.min if p.min is not None else -(2**62)),
            to_value=int(p.max if p.max is not None else 2**62), step=1)]
    if p.choices:
        d.additional_constraints = "one of: " + ", ".join(p.choices)
    return d


class BaseNode(Node):
    """rclpy Node with declared parameters, throttled rejections and diagnostics."""

    def __init__(self, node_name: str, params: tuple[Param, ...] = (), **kwargs):
        super().__init__(node_name, **kwargs)
        self._params: dict[str, Param] = {}
        for p in with_common(params):
            self._params[p.name] = p
            self.declare_parameter(p.name, p.default, descriptor(p))
        self.rejections = RejectionLog(period_s=self.param("reject_log_period_s"))
        self.rates: dict[str, RateMeter] = {}
        self.latency: dict[str, LatencyStats] = {}
        self.status_message = "ok"
        self.status_level = DiagnosticStatus.OK
        self._diag_pub = self.create_publisher(DiagnosticArray, "diagnostics", 10)
        self.create_timer(self.param("diagnostics_period_s"), self.publish_diagnostics)

    # -- parameters ---------------------------------------------------------
    def param(self, name: str) -> Any:
        value = self.get_parameter(name).value
        return self._params[name].validate(value) if name in self._params else value

    # -- input bookkeeping ---------------------------------------------------
    def received(self, topic: str) -> None:
        self.rates.setdefault(topic, RateMeter()).tick()

    def reject(self, topic: str, reason: str) -> None:
        """Count a rejected input; log it at most once per period per topic."""
        if self.rejections.reject(topic, reason):
            self.get_logger().warning(
                f"rejected message on '{topic}': {reason} "
                f"({self.rejections.total(topic)} rejected on this topic so far)")

    def stage(self, name: str) -> StageTimer:
        """``with self.stage('infer'):`` records the stage's latency for diagnostics."""
        return StageTimer(self.latency, name)

    # -- diagnostics ---------------------------------------------------------
    def diagnostics_values(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for topic, rm in self.rates.items():
            values[f"rate_hz/{topic}"] = f"{rm.rate_hz():.2f}"
        for stage, st in self.latency.items():
            s = st.summary()
            values[f"latency_ms_median/{stage}"] = f"{s['median_ms']:.2f}"
            values[f"latency_ms_p90/{stage}"] = f"{s['p90_ms']:.2f}"
        for topic, n in self.rejections.by_topic().items():
            values[f"rejected/{topic}"] = str(n)
        values["rejected_total"] = str(self.rejections.total())
        return values

    def publish_diagnostics(self) -> None:
        status = DiagnosticStatus(level=self.status_level, name=self.get_fully_qualified_name(),
                                  message=self.status_message, hardware_id="depth_nodes")
        status.values = [KeyValue(key=k, value=v) for k, v in self.diagnostics_values().items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(msg)


def run_node(factory, args=None) -> int:
    """``main()`` body of a node executable: init, spin until Ctrl-C / SIGTERM, shut down cleanly.

    ``factory(context)`` returns one node or a list of nodes (composition: several
    nodes sharing objects in one process, spun by one multi-threaded executor).
    """
    import rclpy
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    context = rclpy.Context()
    # a non-default context gets no signal handlers unless asked: without them Ctrl-C / SIGINT
    # would not stop the executor and e.g. bag_recorder would never close its bag
    rclpy.init(args=args, context=context, signal_handler_options=SignalHandlerOptions.ALL)
    nodes = []
    try:
        made = factory(context)
        nodes = list(made) if isinstance(made, (list, tuple)) else [made]
        if len(nodes) > 1:
            # composed nodes share the GIL: a thread coming back from a GIL-free kernel (Open3D,
            # numba) waits up to the switch interval for a thread running Python; at the default
            # 5 ms a TSDF integration (dozens of such returns) stretched several-fold
            sys.setswitchinterval(COMPOSED_SWITCH_INTERVAL_S)
        # a thread per node and one spare: a long callback of one node (a TSDF integration)
        # must not hold up another node's short ones (the planning cycle)
        executor = MultiThreadedExecutor(num_threads=max(2, len(nodes) + 1), context=context)
        for n in nodes:
            executor.add_node(n)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        # a signal shuts the context down while spin() is waiting: rclpy may then fail with
        # "context is not valid" instead of ExternalShutdownException; only a live context's error is real
        if context.ok():
            raise
    finally:
        for n in nodes:
            n.destroy_node()
        if context.ok():
            rclpy.shutdown(context=context)
    return 0
