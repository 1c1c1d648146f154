"""What makes the lockstep graph deterministic, checked in-process on real rclpy (no processes).

* primitive_planner_node with ``trigger:=depth`` plans once per depth frame, stamped no earlier
  than the frame, as soon as odometry reaches its stamp; its timer stays quiet while depth is fresh,
  and before the first frame for ``depth_timeout_s``. ``trigger:=map`` also waits until the shared
  mapper has integrated the frame.
* launcher.ProcessGroup starts and stops subsets of its children (the demo starts the simulator last).
"""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import rclpy
from nav_msgs.msg import Odometry
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String

from depth_nodes.camera import PinholeCamera
from depth_nodes.geometry import pose_from_xyz_yaw
from depth_nodes.launcher import Child, ProcessGroup
from depth_nodes.ros.conversions import array_to_image_msg, pinhole_to_camera_info_msg, pose_to_odometry_msg
from depth_nodes.ros.node_base import SENSOR_QOS
from depth_nodes.ros.primitive_planner_node import PrimitivePlannerNode
from depth_nodes.ros.tsdf_mapper_node import TsdfMapperNode
from helpers_ros import spin_until

CAM = PinholeCamera.from_fov(48, 36, 90.0)


@pytest.mark.dds
@pytest.mark.parametrize("trigger", ["depth", "map"])
def test_depth_trigger_plans_once_per_frame_on_that_frame(trigger):
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    mapper = TsdfMapperNode(context=ctx, parameter_overrides=[Parameter("map_publish_period_s", value=60.0)])
    planner = PrimitivePlannerNode(mapper.mapper, context=ctx, parameter_overrides=[
        Parameter("esdf_half_extent_xyz", value=[3.0, 3.0, 1.0]), Parameter("depth_timeout_s", value=5.0),
        Parameter("odom_timeout_s", value=5.0), Parameter("rate_hz", value=20.0), Parameter("trigger", value=trigger)])
    integrated_at_plan: list = []  # the mapper's newest integrated stamp when each depth-triggered cycle starts
    plan_once = planner.plan_once

    def recording_plan_once(not_before=None):
        if not_before is not None:
            integrated_at_plan.append(mapper.mapper.processed_stamp)
        return plan_once(not_before=not_before)

    planner.plan_once = recording_plan_once
    helper = rclpy.create_node("trigger_helper", context=ctx)
    odom_pub = helper.create_publisher(Odometry, "odom", SENSOR_QOS)
    info_pub = helper.create_publisher(CameraInfo, "depth/camera_info", SENSOR_QOS)
    depth_pub = helper.create_publisher(Image, "depth/image", SENSOR_QOS)
    statuses: list[dict] = []
    helper.create_subscription(String, "planner/status", lambda m: statuses.append(json.loads(m.data)), 50)
    ex = SingleThreadedExecutor(context=ctx)
    for n in (mapper, planner, helper):
        ex.add_node(n)
    T = pose_from_xyz_yaw([0.0, 0.0, 1.5], 0.0)
    depth = np.full((CAM.height, CAM.width), 6.0, np.float32)
    try:
        t0 = helper.get_clock().now().nanoseconds * 1e-9
        sent = []
        for k in range(4):
            # the depth frame first: it waits for the odometry of its stamp, then is planned on at once
            t = t0 + 0.2 * k
            info_pub.publish(pinhole_to_camera_info_msg(CAM, stamp=t))
            depth_pub.publish(array_to_image_msg(depth, "32FC1", stamp=t, frame_id=CAM.frame_id))
            spin_until(ex, lambda: False, timeout_s=0.3)
            assert not any(s.get("depth_stamp") == pytest.approx(t, abs=1e-6) for s in statuses)
            odom_pub.publish(pose_to_odometry_msg(T, np.zeros(6), stamp=t, frame_id="map"))
            assert spin_until(ex, lambda t=t: any(s.get("depth_stamp") == pytest.approx(t, abs=1e-6)
                                                  for s in statuses), timeout_s=10.0)
            sent.append(t)
        spin_until(ex, lambda: False, timeout_s=0.5)  # a 20 Hz timer would plan ~10 more times here
        planned = [s for s in statuses if s.get("depth_stamp") is not None]
        assert [s["depth_stamp"] for s in planned] == pytest.approx(sent, abs=1e-6)  # once per frame
        assert all(s["stamp"] >= s["depth_stamp"] for s in planned)
        # only odometry-less start-up cycles (no depth yet) came from the timer
        assert all(s["status"] == "stale_odom" for s in statuses if s.get("depth_stamp") is None)
        assert mapper.mapper.processed_stamp == pytest.approx(sent[-1], abs=1e-6)
        if trigger == "map":  # every cycle planned on a map that held its frame
            assert integrated_at_plan == pytest.approx(sent, abs=1e-6)
    finally:
        ex.shutdown()
        for n in (mapper, planner, helper):
            n.destroy_node()
        rclpy.shutdown(context=ctx)


@pytest.mark.dds
def test_planner_waits_depth_timeout_for_the_first_frame_before_braking():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    mapper = TsdfMapperNode(context=ctx, parameter_overrides=[Parameter("map_publish_period_s", value=60.0)])
    planner = PrimitivePlannerNode(mapper.mapper, context=ctx, parameter_overrides=[
        Parameter("esdf_half_extent_xyz", value=[3.0, 3.0, 1.0]), Parameter("depth_timeout_s", value=1.0),
        Parameter("odom_timeout_s", value=5.0), Parameter("rate_hz", value=20.0)])
    helper = rclpy.create_node("startup_helper", context=ctx)
    odom_pub = helper.create_publisher(Odometry, "odom", SENSOR_QOS)
    statuses: list[tuple[float, dict]] = []
    helper.create_subscription(String, "planner/status",
                               lambda m: statuses.append((planner.get_clock().now().nanoseconds * 1e-9,
                                                          json.loads(m.data))), 50)
    ex = SingleThreadedExecutor(context=ctx)
    for n in (mapper, planner, helper):
        ex.add_node(n)
    T = pose_from_xyz_yaw([0.0, 0.0, 1.5], 0.0)
    try:
        def send_odom():
            t = helper.get_clock().now().nanoseconds * 1e-9
            odom_pub.publish(pose_to_odometry_msg(T, np.zeros(6), stamp=t, frame_id="map"))

        assert spin_until(ex, lambda: any(s["status"] == "stale_depth" for _, s in statuses), timeout_s=15.0,
                          tick=send_odom)
        assert planner._first_tick is not None
        first_brake = min(t for t, s in statuses if s["status"] == "stale_depth")
        # the brake came only once depth had been missing for depth_timeout_s since the first cycle
        assert first_brake - planner._first_tick >= 1.0 - 1e-3
    finally:
        ex.shutdown()
        for n in (mapper, planner, helper):
            n.destroy_node()
        rclpy.shutdown(context=ctx)


def test_process_group_starts_and_stops_subsets():
    sleep = [sys.executable, "-c", "import time; time.sleep(60)"]
    group = ProcessGroup([Child("a", sleep), Child("b", sleep)], sigint_grace_s=2.0, sigterm_grace_s=2.0)
    try:
        group.start(["a"])
        a, b = group.children
        assert a.proc is not None and b.proc is None
        assert group.wait(timeout_s=0.0) == "timeout"
        codes = group.stop(["a"])
        assert codes["a"] is not None and codes["b"] is None and b.proc is None
        group.start()
        assert b.proc is not None and b.proc.poll() is None and a.proc.poll() is not None
    finally:
        codes = group.stop()
    assert codes["b"] is not None
