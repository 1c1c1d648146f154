"""sim_node, bag_recorder and bag_player on real rclpy (in-process, one executor, no mocks)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import rclpy
from nav_msgs.msg import Odometry
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image
from std_msgs.msg import Bool, String
from trajectory_msgs.msg import MultiDOFJointTrajectory

from depth_nodes.codec import stamp_to_ns
from depth_nodes.eval.bagio import BagSink, BagSource
from depth_nodes.ros.bag_player import BagPlayer
from depth_nodes.ros.bag_recorder import BagRecorder
from depth_nodes.ros.conversions_traj import trajectory_to_msg
from depth_nodes.ros.msg_convert import message_class
from depth_nodes.ros.node_base import SENSOR_QOS
from depth_nodes.ros.sim_node import SimNode
from depth_nodes.sim.stepper import T0_NS
from depth_nodes.sim.world import WorldSpec, build_world
from depth_nodes.trajectory import Trajectory
from helpers_ros import spin_until

pytestmark = pytest.mark.dds

SPEC = WorldSpec("forest", seed=3, density="sparse", extent=(12.0, 8.0))
LATCHED = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
RELIABLE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1000, reliability=ReliabilityPolicy.RELIABLE)


def sim_params(**over) -> list[Parameter]:
    values = {"world": "forest", "seed": SPEC.seed, "density": "sparse", "extent_m": list(SPEC.extent),
              "image_width": 64, "image_height": 48, "lockstep": True, "lockstep_timeout_s": 0.05,
              "diagnostics_period_s": 0.2, **over}
    return [Parameter(k, value=v) for k, v in values.items()]


@pytest.fixture(scope="module")
def world():
    return build_world(SPEC)


class Listener:
    """Helper node that records sim outputs and can answer camera frames with a trajectory (a 'planner')."""

    def __init__(self, ctx, target=None, start=None, speed: float = 2.0):
        self.node = rclpy.create_node("sim_test_listener", context=ctx)
        self.got: dict[str, list] = {"image": [], "odom": [], "clock": [], "status": [], "collision": [],
                                     "spec": []}
        sub = self.node.create_subscription
        sub(Image, "camera/image_raw", self.got["image"].append, SENSOR_QOS)
        sub(Odometry, "odom", self.got["odom"].append, SENSOR_QOS)
        sub(Clock, "/clock", self._on_clock, RELIABLE)
        sub(String, "sim/status", lambda m: self.got["status"].append(json.loads(m.data)), LATCHED)
        sub(Bool, "sim/collision", lambda m: self.got["collision"].append(m.data), LATCHED)
        sub(String, "sim/world_spec", lambda m: self.got["spec"].append(json.loads(m.data)), LATCHED)
        self.pub = self.node.create_publisher(MultiDOFJointTrajectory, "planner/trajectory", 10)
        self.target, self.start, self.speed = target, start, speed
        self.answered = 0

    def _on_clock(self, msg: Clock) -> None:
        """Answer every camera frame time (10 Hz; /clock is reliable, images are best effort) with a plan."""
        self.got["clock"].append(msg)
        if self.target is None or (stamp_to_ns(msg.clock) - T0_NS) % 100_000_000:
            return
        odom = self.got["odom"][-1].pose.pose.position if self.got["odom"] else None
        p = self.start if odom is None else np.array([odom.x, odom.y, odom.z])
        d = self.target - p
        dist = max(float(np.linalg.norm(d)), 1e-3)
        v = d / dist * self.speed
        yaw = float(np.arctan2(d[1], d[0]))
        traj = Trajectory(t=[0.0, dist / self.speed], pos=[p, self.target], vel=[v, v], acc=np.zeros((2, 3)),
                          yaw=[yaw, yaw], stamp=stamp_to_ns(msg.clock) * 1e-9)
        self.pub.publish(trajectory_to_msg(traj))  # float-second stamp: within the sim's lockstep slack
        self.answered += 1

    def odom_xyz(self) -> np.ndarray:
        return np.array([[o.pose.pose.position.x, o.pose.pose.position.y, o.pose.pose.position.z]
                         for o in self.got["odom"]])


def run(ctx, nodes, predicate, timeout_s=15.0):
    ex = SingleThreadedExecutor(context=ctx)
    for n in nodes:
        ex.add_node(n)
    try:
        return spin_until(ex, predicate, timeout_s=timeout_s, step_s=0.005)
    finally:
        ex.shutdown()


def test_sim_node_stamps_clock_and_hover(ctx, world):
    sim = SimNode(context=ctx, parameter_overrides=sim_params())
    lis = Listener(ctx)
    try:
        def done():
            if len(lis.got["image"]) < 4 or not lis.got["spec"] or not lis.got["clock"]:
                return False
            last = max(stamp_to_ns(m.header.stamp) for m in lis.got["image"] + lis.got["odom"])
            return stamp_to_ns(lis.got["clock"][-1].clock) >= last

        assert run(ctx, [sim, lis.node], done)
        img_ns = [stamp_to_ns(m.header.stamp) for m in lis.got["image"]]
        odom_ns = [stamp_to_ns(m.header.stamp) for m in lis.got["odom"]]
        clock_ns = [stamp_to_ns(m.clock) for m in lis.got["clock"]]
        assert img_ns[0] == T0_NS and np.all(np.diff(img_ns) == 100_000_000)
        assert np.all(np.diff(odom_ns) == 20_000_000)
        assert set(img_ns) <= set(clock_ns) and set(odom_ns) <= set(clock_ns)
        assert np.all(np.diff(clock_ns) > 0)
        assert lis.got["image"][0].header.frame_id == "camera_optical_frame"
        assert (lis.got["image"][0].width, lis.got["image"][0].height) == (64, 48)
        assert WorldSpec.from_dict(lis.got["spec"][-1]) == SPEC
        # no trajectory: the vehicle hovers at the world's start, lockstep waits timed out
        np.testing.assert_allclose(lis.odom_xyz(), np.tile(world.start, (len(lis.got["odom"]), 1)), atol=1e-9)
        assert sim.lockstep_timeouts >= 3
        # a malformed trajectory (no points) is rejected and the node keeps serving, still hovering
        ex = SingleThreadedExecutor(context=ctx)
        ex.add_node(sim)
        ex.add_node(lis.node)
        n_odom = len(lis.got["odom"])
        assert spin_until(ex, lambda: sim.rejections.total("planner/trajectory") >= 1
                          and len(lis.got["odom"]) > n_odom + 5,
                          tick=lambda: lis.pub.publish(MultiDOFJointTrajectory()))
        ex.shutdown()
        np.testing.assert_allclose(lis.odom_xyz()[-1], world.start, atol=1e-9)
        assert lis.got["collision"] == [False]
    finally:
        sim.destroy_node()
        lis.node.destroy_node()


def test_sim_node_follows_trajectory_in_lockstep(ctx, world):
    target = world.start + np.array([1.5, 0.0, 0.0])
    sim = SimNode(context=ctx, parameter_overrides=sim_params(lockstep_timeout_s=30.0, publish_radar=False))
    lis = Listener(ctx, target=target, start=world.start, speed=1.0)
    try:
        assert run(ctx, [sim, lis.node], lambda: lis.answered >= 8 and len(lis.got["odom"]) >= 20)
        xyz = lis.odom_xyz()
        assert xyz[-1, 0] > world.start[0] + 0.3
        assert np.all(np.diff(xyz[:, 0]) >= -1e-9)
        assert sim.lockstep_timeouts == 0  # the 'planner' answered every frame
        assert lis.got["status"][-1]["t"] > 0.5
    finally:
        sim.destroy_node()
        lis.node.destroy_node()


def _obstacle_point(world, z: float) -> np.ndarray:
    """A point on an obstacle surface (not the ground) at height ``z``, nearest to the start."""
    (x0, y0, _), (x1, y1, _) = world.bounds
    xs, ys = np.meshgrid(np.arange(x0, x1, 0.1), np.arange(y0, y1, 0.1))
    pts = np.column_stack([xs.ravel(), ys.ravel(), np.full(xs.size, z)])
    d = world.distance(pts)
    ground = z - world.ground_z(pts[:, 0], pts[:, 1])
    near = pts[(d < 0.05) & (ground > 0.5)]
    assert len(near), "test world has no obstacle at flight height"
    return near[np.argmin(np.linalg.norm(near - world.start, axis=1))]


def test_sim_node_reports_collision(ctx, world):
    tree = _obstacle_point(world, float(world.start[2]))
    sim = SimNode(context=ctx, parameter_overrides=sim_params(lockstep_timeout_s=30.0, publish_stereo=False,
                                                                  publish_radar=False, max_speed_mps=6.0))
    lis = Listener(ctx, target=tree, start=world.start, speed=4.0)
    try:
        assert run(ctx, [sim, lis.node], lambda: sim.ended is not None, timeout_s=25.0)
        assert sim.ended == "collided"
        assert run(ctx, [sim, lis.node], lambda: lis.got["collision"][-1:] == [True], timeout_s=5.0)
        status = lis.got["status"][-1]
        assert status["collided"] and status["ended"] == "collided" and not status["reached_goal"]
        assert float(world.distance(np.array([status["pos"]]))[0]) < 0.25
    finally:
        sim.destroy_node()
        lis.node.destroy_node()


def test_sim_node_free_running_stops_at_max_duration(ctx):
    sim = SimNode(context=ctx, parameter_overrides=sim_params(lockstep=False, realtime_factor=20.0,
                                                                  max_duration_s=0.3, publish_stereo=False))
    lis = Listener(ctx)
    try:
        assert run(ctx, [sim, lis.node], lambda: sim.ended is not None and lis.got["status"]
                   and lis.got["status"][-1]["ended"] is not None)
        assert sim.ended == "max_duration" and sim.lockstep_timeouts == 0
        k_end = sim.sim.k
        run(ctx, [sim, lis.node], lambda: False, timeout_s=0.2)
        assert sim.sim.k == k_end  # on_end=stop: time no longer advances
        assert lis.got["status"][-1]["t"] == pytest.approx(0.3)
    finally:
        sim.destroy_node()
        lis.node.destroy_node()


def test_bag_recorder_records_sim_topics(ctx, tmp_path):
    out = tmp_path / "rec"
    sim = SimNode(context=ctx, parameter_overrides=sim_params(publish_stereo=False, publish_radar=False))
    rec = BagRecorder(context=ctx, parameter_overrides=[
        Parameter("topics", value="odom,camera/image_raw,sim/world_spec"), Parameter("output", value=str(out)),
        Parameter("discovery_period_s", value=0.05)])
    try:
        assert run(ctx, [sim, rec], lambda: rec.sink.counts.get("camera/image_raw", 0) >= 3
                   and rec.sink.counts.get("odom", 0) >= 10 and rec.sink.counts.get("sim/world_spec", 0) >= 1)
        counts = rec.close()
    finally:
        rec.destroy_node()
        sim.destroy_node()
    src = BagSource(out)
    info = {t.topic: t for t in src.info().topics}
    assert info["odom"].msgtype == "nav_msgs/msg/Odometry" and info["odom"].count == counts["odom"] >= 10
    assert info["camera/image_raw"].msgtype == "sensor_msgs/msg/Image"
    assert info["camera/image_raw"].count == counts["camera/image_raw"]
    assert info["sim/world_spec"].count == 1
    msgs = list(src.messages(["image", "world_spec"]))
    img = next(m for r, _, _, m in msgs if r == "image")
    assert (img.width, img.height, img.encoding) == (64, 48, "rgb8")
    spec = next(m for r, _, _, m in msgs if r == "world_spec")
    assert WorldSpec.from_dict(spec.data) == SPEC


def _write_bag(path, storage: str) -> list[tuple[str, int, bytes]]:
    """A small bag (odom at 50 Hz, images at 10 Hz, one world spec); returns (topic, log_ns, raw) written."""
    rng = np.random.default_rng(5)
    with BagSink(path, storage) as sink:
        sink.add_topic("odom", "nav_msgs/msg/Odometry")
        sink.add_topic("camera/image_raw", "sensor_msgs/msg/Image")
        sink.add_topic("sim/world_spec", "std_msgs/msg/String", latched=True)
        t0 = T0_NS
        sink.write("sim/world_spec", t0, sink.message("std_msgs/msg/String", {"data": SPEC.to_json()}))
        for k in range(15):
            t = t0 + k * 20_000_000
            pose = {"pose": {"pose": {"position": (0.1 * k, 0.0, 1.5), "orientation": (0.0, 0.0, 0.0, 1.0)}}}
            sink.write_fields("odom", t, pose, frame_id="map")
            if k % 5 == 0:
                img = rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)
                sink.write_fields("camera/image_raw", t, {"height": 6, "width": 8, "encoding": "rgb8",
                                                          "step": 24, "data": img.reshape(-1)},
                                  frame_id="camera_optical_frame")
    return [(t, ns, raw) for t, _, ns, raw in BagSource(path).raw_messages()]


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bag_player_replays_bit_identical_with_clock(ctx, tmp_path, storage):
    written = _write_bag(tmp_path / "bag", storage)
    player = BagPlayer(context=ctx, parameter_overrides=[Parameter("bag", value=str(tmp_path / "bag")),
                                                         Parameter("rate", value=5.0),
                                                         Parameter("exit_at_end", value=False)])
    lis = rclpy.create_node("player_listener", context=ctx)
    got: list[tuple[str, bytes]] = []
    clocks: list[int] = []
    for topic, qos in (("odom", RELIABLE), ("camera/image_raw", RELIABLE), ("sim/world_spec", LATCHED)):
        cls = message_class(BagSource(tmp_path / "bag").topic_types[topic])
        lis.create_subscription(cls, topic, lambda raw, t=topic: got.append((t, raw)), qos, raw=True)
    lis.create_subscription(Clock, "/clock", lambda m: clocks.append(stamp_to_ns(m.clock)), RELIABLE)
    try:
        last_ns = max(ns for _, ns, _ in written)
        assert run(ctx, [player, lis], lambda: player.finished and len(got) >= len(written)
                   and clocks[-1:] == [last_ns], timeout_s=15.0)
    finally:
        player.destroy_node()
        lis.destroy_node()
    assert sorted(got) == sorted((t, raw) for t, _, raw in written)
    assert [raw for t, raw in got if t == "odom"] == [raw for t, _, raw in written if t == "odom"]
    odom = deserialize_message(next(raw for t, raw in got if t == "odom"), Odometry)
    assert odom.header.frame_id == "map" and stamp_to_ns(odom.header.stamp) == T0_NS
    assert clocks == sorted(clocks) and set(clocks) == {ns for _, ns, _ in written}


def test_bag_player_loops_with_clock_jump(ctx, tmp_path):
    written = _write_bag(tmp_path / "bag", "mcap")
    player = BagPlayer(context=ctx, parameter_overrides=[
        Parameter("bag", value=str(tmp_path / "bag")), Parameter("rate", value=10.0), Parameter("loop", value=True),
        Parameter("topics", value="odom"), Parameter("start_offset_s", value=0.1)])
    lis = rclpy.create_node("player_listener", context=ctx)
    clocks: list[int] = []
    lis.create_subscription(Clock, "/clock", lambda m: clocks.append(stamp_to_ns(m.clock)), RELIABLE)

    # a pass takes about 40 ms: wait until the listener saw a jump, not only until the player looped
    # (when discovery makes the listener miss the first pass, it has seen no jump by then)
    def looped_and_seen() -> bool:
        return player.loops >= 2 and not player.finished and bool(np.any(np.diff(clocks) < 0))

    try:
        assert run(ctx, [player, lis], looped_and_seen, timeout_s=15.0)
    finally:
        player.destroy_node()
        lis.destroy_node()
    odom_ns = sorted(ns for t, ns, _ in written if t == "odom" and ns >= T0_NS + 100_000_000)
    assert min(clocks) == odom_ns[0]  # start_offset_s skipped the first 0.1 s
    jumps = int(np.sum(np.diff(clocks) < 0))
    assert jumps >= 1 and set(clocks) <= set(odom_ns)


def test_bag_player_and_recorder_reject_bad_parameters(ctx, tmp_path):
    with pytest.raises(ValueError, match="bag"):
        BagPlayer(context=ctx, parameter_overrides=[Parameter("bag", value=str(tmp_path / "missing"))])
    _write_bag(tmp_path / "bag", "mcap")
    with pytest.raises(ValueError, match="not in bag"):
        BagPlayer(context=ctx, parameter_overrides=[Parameter("bag", value=str(tmp_path / "bag")),
                                                     Parameter("topics", value="odom,nope")])
    with pytest.raises(ValueError, match="already exists"):
        BagRecorder(context=ctx, parameter_overrides=[Parameter("topics", value="odom"),
                                                       Parameter("output", value=str(tmp_path / "bag"))])
    with pytest.raises(ValueError, match="types"):
        BagRecorder(context=ctx, parameter_overrides=[Parameter("topics", value="odom"),
                                                       Parameter("types", value="a/msg/B,c/msg/D"),
                                                       Parameter("output", value=str(tmp_path / "x"))])


def test_bag_recorder_finalises_its_bag_when_start_up_fails(ctx, tmp_path, monkeypatch):
    """A signal during start-up shuts the context down under the constructor, which then raises
    with no node for the executable to destroy: the bag it had opened must be closed anyway."""
    def shut_down(self):
        raise RuntimeError("context is not valid")

    monkeypatch.setattr(BagRecorder, "_discover", shut_down)
    out = tmp_path / "bag"
    with pytest.raises(RuntimeError, match="context"):
        BagRecorder(context=ctx, parameter_overrides=[Parameter("topics", value="odom"),
                                                       Parameter("types", value="nav_msgs/msg/Odometry"),
                                                       Parameter("output", value=str(out))])
    assert (out / "metadata.yaml").is_file()
    assert BagSource(out).topic_types == {"odom": "nav_msgs/msg/Odometry"}


def test_message_class_resolves_bag_types(tmp_path):
    written = _write_bag(tmp_path / "bag", "mcap")
    src = BagSource(tmp_path / "bag")
    for topic, _, raw in written[:7]:
        cls = message_class(src.topic_types[topic])
        assert deserialize_message(raw, cls) is not None
    with pytest.raises(ValueError, match="pkg/msg/Name"):
        message_class("Image")
    with pytest.raises(ValueError, match="not available"):
        message_class("no_such_pkg/msg/Thing")


def test_sim_node_repeats_an_unanswered_first_frame(ctx):
    """Lockstep: a frame nobody answers (here the first) is published again, the same messages, until the
    lockstep timeout (a node that lost it gets it; the others ignore the repeat)."""
    sim = SimNode(context=ctx, parameter_overrides=sim_params(lockstep_timeout_s=4.0, lockstep_start_settle_s=0.0))
    lis = Listener(ctx)  # subscribes and has a trajectory publisher, but never answers
    try:
        first = lambda: [m for m in lis.got["image"] if stamp_to_ns(m.header.stamp) == T0_NS]  # noqa: E731
        assert run(ctx, [sim, lis.node], lambda: len(first()) >= 2, timeout_s=10.0)
        copies = first()
        assert all(bytes(m.data) == bytes(copies[0].data) for m in copies)
        assert sim.frame_repeats >= 1 and sim.lockstep_timeouts == 0 and sim.sim.k == 0
        assert {stamp_to_ns(m.header.stamp) for m in lis.got["odom"]} == {T0_NS}  # time did not move on
    finally:
        sim.destroy_node()
        lis.node.destroy_node()
