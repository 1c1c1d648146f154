"""fault_relay and the node fixes the fault table needed, on real rclpy in-process with simulated time.

A helper node plays the simulator: /clock, odometry at 50 Hz, depth frames and camera info at 10 Hz.
"""
from __future__ import annotations

import json
import time
from dataclasses import replace

import numpy as np
import pytest
import rclpy
from nav_msgs.msg import Odometry
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String

from depth_nodes.camera import PinholeCamera
from depth_nodes.eval.faults import FAULTS_BY_NAME, schedule_to_json
from depth_nodes.ros.clock import CLOCK_QOS, clock_msg
from depth_nodes.ros.conversions import array_to_image_msg, depth_to_metres, pinhole_to_camera_info_msg, \
    pose_to_odometry_msg, stamp_to_ns
from depth_nodes.ros.fault_relay import FaultRelay
from depth_nodes.ros.node_base import SENSOR_QOS
from depth_nodes.ros.primitive_planner_node import PrimitivePlannerNode
from depth_nodes.ros.tsdf_mapper_node import TsdfMapperNode
from helpers_ros import spin_until

pytestmark = pytest.mark.dds

CAM = PinholeCamera.from_fov(64, 48, 90.0)
T0_NS = 1_700_000_000 * 10**9
STEP_NS = 20_000_000  # 50 Hz
SIM = [Parameter("use_sim_time", value=True)]


class FakeSim:
    """Publishes /clock, odom, depth/image + depth/camera_info (on ``prefix``) and records outputs."""

    def __init__(self, ctx, prefix: str = ""):
        self.node = n = rclpy.create_node("fake_sim", context=ctx)
        self.clock = n.create_publisher(Clock, "/clock", CLOCK_QOS)
        self.odom = n.create_publisher(Odometry, f"{prefix}odom", SENSOR_QOS)
        self.depth = n.create_publisher(Image, f"{prefix}depth/image", SENSOR_QOS)
        self.info = n.create_publisher(CameraInfo, f"{prefix}depth/camera_info", SENSOR_QOS)
        self.status: list[dict] = []
        n.create_subscription(String, "planner/status", lambda m: self.status.append(json.loads(m.data)), 50)
        self.T = np.eye(4)
        self.T[2, 3] = 1.5

    def step(self, k: int, odom: bool = True, odom_offset_s: float = 0.0, depth_offset_s: float = 0.0) -> None:
        t = T0_NS + k * STEP_NS
        self.clock.publish(clock_msg(t))
        if odom:
            self.odom.publish(pose_to_odometry_msg(self.T, np.zeros(6), stamp=t * 1e-9 + odom_offset_s,
                                                   frame_id="map"))
        if k % 5 == 0:
            s = t * 1e-9 + depth_offset_s
            self.info.publish(pinhole_to_camera_info_msg(CAM, stamp=s))
            self.depth.publish(array_to_image_msg(np.full((CAM.height, CAM.width), 4.0, np.float32), "32FC1",
                                                  stamp=s, frame_id=CAM.frame_id))


def _run(ex, sim: FakeSim, steps, kw=None, nodes=()) -> None:
    """Publish steps ``steps`` (``kw(k)``: FakeSim.step options) in lockstep: after each, spin until
    ``nodes`` saw its /clock and, on camera steps, until the planner reported a status at that time."""
    for k in steps:
        sim.step(k, **(kw(k) if kw is not None else {}))
        t_ns = T0_NS + k * STEP_NS
        spin_until(ex, lambda: all(n.get_clock().now().nanoseconds >= t_ns for n in nodes), 5.0, 0.005)
        if k % 5 == 0:
            spin_until(ex, lambda: bool(sim.status) and sim.status[-1]["stamp"] >= t_ns * 1e-9 - 1e-6, 5.0, 0.005)


@pytest.fixture
def planner(ctx):
    mapper = TsdfMapperNode(context=ctx, parameter_overrides=SIM)
    plan = PrimitivePlannerNode(mapper.mapper, context=ctx, parameter_overrides=SIM)
    sim = FakeSim(ctx)
    ex = MultiThreadedExecutor(context=ctx)
    for n in (mapper, plan, sim.node):
        ex.add_node(n)
    yield mapper, plan, sim, ex
    ex.shutdown()
    for n in (mapper, plan, sim.node):
        n.destroy_node()


def _rel(s: dict) -> float:
    return s["stamp"] - T0_NS * 1e-9


def test_planner_brakes_on_stale_odometry_while_depth_keeps_coming(planner):
    mapper, plan, sim, ex = planner
    # odometry silent 1.0 .. 2.0 s while depth keeps coming
    _run(ex, sim, range(0, 140), kw=lambda k: {"odom": not 50 <= k < 100}, nodes=(mapper, plan))
    stale = [_rel(s) for s in sim.status if s["status"] == "stale_odom" and 1.0 < _rel(s) < 2.0]
    assert stale, [(round(_rel(s), 2), s["status"]) for s in sim.status]
    # last odometry at 0.98 s, timeout 0.2 s: the stop is commanded within 0.2 s of going stale
    assert min(stale) <= 0.98 + 0.2 + 0.2 + 1e-6
    late = [(round(_rel(s), 2), s["status"]) for s in sim.status if _rel(s) > 1.5]
    assert any(t > 2.05 and st not in ("stale_odom", "stale_depth") for t, st in late), late   # resumed


def test_future_and_out_of_order_stamps_are_rejected_and_do_not_stall(planner):
    mapper, plan, sim, ex = planner
    nodes = (mapper, plan)
    _run(ex, sim, range(0, 30), nodes=nodes)
    # one hour ahead: rejected by both nodes (it would otherwise make every later message look old)
    _run(ex, sim, range(30, 40), kw=lambda k: {"odom_offset_s": 3600.0, "depth_offset_s": 3600.0},
         nodes=nodes)
    assert plan.rejections.total("odom") > 0 and mapper.rejections.total("odom") > 0
    assert mapper.rejections.total("depth/image") > 0
    # a bag loop: depth stamped 1 s back (its pose is in the history) must not be fused at the old pose
    frames_before = mapper.mapper.stats()["frames_integrated"]
    rejected_before = mapper.rejections.total("depth/image")
    _run(ex, sim, range(40, 60), kw=lambda k: {"depth_offset_s": -1.0}, nodes=nodes)
    assert mapper.mapper.stats()["frames_integrated"] == frames_before
    assert mapper.rejections.total("depth/image") > rejected_before
    reasons = {r for (t, r) in mapper.rejections.counts if t == "depth/image"}
    assert any("ahead of the clock" in r for r in reasons) and any("not newer than the newest" in r for r in reasons)
    # fresh data again: mapping and planning resume
    _run(ex, sim, range(60, 90), nodes=nodes)
    assert mapper.mapper.stats()["frames_integrated"] > frames_before
    assert any(_rel(s) > 1.5 and s["status"] not in ("stale_odom", "stale_depth") for s in sim.status)


@pytest.fixture
def relay(ctx):
    f = [replace(FAULTS_BY_NAME[name], start_s=start, duration_s=duration) for name, start, duration in
         (("depth_nan", 0.2, 0.3), ("odom_dropout", 0.2, 0.3), ("stamp_future", 0.6, 0.3), ("burst_5x", 1.0, 0.5))]
    node = FaultRelay(context=ctx, parameter_overrides=[Parameter("schedule", value=schedule_to_json(
        f, T0_NS * 1e-9)), Parameter("input_prefix", value="sim_raw")])
    yield node
    node.destroy_node()


def test_relay_applies_scheduled_faults(ctx, relay):
    pub = rclpy.create_node("relay_source", context=ctx)
    sink = rclpy.create_node("relay_sink", context=ctx)
    clock = pub.create_publisher(Clock, "/clock", CLOCK_QOS)
    odom_in = pub.create_publisher(Odometry, "sim_raw/odom", SENSOR_QOS)
    depth_in = pub.create_publisher(Image, "sim_raw/ground_truth/depth", SENSOR_QOS)
    odom_out, depth_out = [], []
    many = QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT)
    sink.create_subscription(Odometry, "odom", odom_out.append, many)
    sink.create_subscription(Image, "ground_truth/depth", depth_out.append, many)
    ex = MultiThreadedExecutor(context=ctx)
    for n in (relay, pub, sink):
        ex.add_node(n)

    def handled() -> int:
        return relay.counts["forwarded"] + relay.counts["dropped"]

    try:
        for k in range(0, 80, 5):   # 10 Hz, t = 0 .. 1.5 s
            t = T0_NS + k * STEP_NS
            clock.publish(clock_msg(t))
            odom_in.publish(pose_to_odometry_msg(np.eye(4), stamp=t * 1e-9, frame_id="map"))
            depth_in.publish(array_to_image_msg(np.full((CAM.height, CAM.width), 4.0, np.float32), "32FC1",
                                                stamp=t * 1e-9))
            # the relay subscribes with sensor QoS (keep last 2): let it take both messages before
            # the next pair, or a loaded machine drops inputs at the relay and the test flakes
            want = handled() + 2
            end = time.monotonic() + 10.0
            while handled() < want and time.monotonic() < end:
                ex.spin_once(timeout_sec=0.01)
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            ex.spin_once(timeout_sec=0.01)
    finally:
        ex.shutdown()
        pub.destroy_node()
        sink.destroy_node()
    odom_t = sorted(round((stamp_to_ns(m.header.stamp) - T0_NS) * 1e-9, 3) for m in odom_out)
    depth = {round((stamp_to_ns(m.header.stamp) - T0_NS) * 1e-9, 3): depth_to_metres(m) for m in depth_out}
    assert not [t for t in odom_t if 0.2 <= t < 0.5] and 0.1 in odom_t, odom_t   # odometry dropout
    assert np.isnan(depth[0.3]).all() and np.nanmax(depth[0.1]) == pytest.approx(4.0)  # NaN depth
    assert np.nanmax(depth[0.5]) == pytest.approx(4.0)
    future = sorted(t for t in odom_t if t > 3000)                                  # +1 h, 0.6 .. 0.9 s
    assert future == pytest.approx([3600.6, 3600.7, 3600.8])
    burst = [t for t in odom_t if 0.9 < t < 1.5]                                    # 5 copies, distinct stamps
    assert len(burst) >= 15 and len(set(burst)) == len(burst), burst
    assert relay.counts["dropped"] > 0 and relay.counts["corrupted"] > 0 and relay.counts["burst_copies"] > 0
