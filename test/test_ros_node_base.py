"""BaseNode on real rclpy: declared parameters with ranges, throttled rejections, diagnostics."""
from __future__ import annotations

import time

import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter

from depth_nodes import params
from depth_nodes.ros.node_base import BaseNode

NODE = "base_node_under_test"


PARAMS = (
    params.Param("speed", 2.0, "Cruise speed (m/s).", 0.1, 10.0),
    params.Param("mode", "mono", "Depth mode.", choices=("mono", "stereo")),
)


def test_parameters_declared_with_descriptions_and_ranges(ctx):
    node = BaseNode(NODE, PARAMS, context=ctx, parameter_overrides=[Parameter("diagnostics_period_s", value=0.1)])
    try:
        assert node.param("speed") == 2.0 and node.param("mode") == "mono"
        d = node.describe_parameter("speed")
        assert "Cruise speed" in d.description
        assert d.floating_point_range[0].from_value == pytest.approx(0.1)
        assert d.floating_point_range[0].to_value == pytest.approx(10.0)
        # out-of-range set is refused by rclpy thanks to the declared range
        result = node.set_parameters([Parameter("speed", value=50.0)])[0]
        assert not result.successful and node.param("speed") == 2.0
    finally:
        node.destroy_node()


def test_duplicate_parameter_is_an_error(ctx):
    with pytest.raises(ValueError, match="declared twice"):
        BaseNode(NODE, PARAMS + (params.Param("speed", 1.0, "again"),), context=ctx)


def test_rejections_counted_and_published_in_diagnostics(ctx):
    node = BaseNode(NODE, PARAMS, context=ctx, parameter_overrides=[Parameter("diagnostics_period_s", value=0.1)])
    listener = rclpy.create_node("diag_listener", context=ctx)
    got: list[DiagnosticArray] = []
    listener.create_subscription(DiagnosticArray, "diagnostics", got.append, 10)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    ex.add_node(listener)
    try:
        for _ in range(25):
            node.reject("camera/image_raw", "unknown encoding 'yuv9'")
        node.received("odom")
        with node.stage("infer"):
            time.sleep(0.002)
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and not got:
            ex.spin_once(timeout_sec=0.05)
        assert got, "no diagnostics received"
        values = {kv.key: kv.value for kv in got[-1].status[0].values}
        assert values["rejected/camera/image_raw"] == "25"
        assert values["rejected_total"] == "25"
        assert float(values["latency_ms_median/infer"]) >= 2.0
    finally:
        ex.shutdown()
        node.destroy_node()
        listener.destroy_node()
