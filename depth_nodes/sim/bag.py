"""Record a simulated flight into a rosbag2 (MCAP or sqlite3) with the ``rosbags`` library.

The drone flies the scripted collision-free route (then hovers at the goal).
Topics are relative names (see :data:`TOPICS`); the world spec and the rig
extrinsics are stored as JSON ``std_msgs/String`` messages at the start and in
the bag metadata (custom data keys ``depth_nodes.world_spec``/``depth_nodes.rig``).
Frames: ``map`` (world), ``base_link`` (body), ``camera_optical_frame``,
``camera_right_optical_frame``, ``radar``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from tqdm import tqdm

from depth_nodes.bagmsg import build_message
from depth_nodes.camera import PinholeCamera
from depth_nodes.codec import (array_to_image_fields, array_to_twist_fields, matrix_to_pose_fields,
                               pinhole_to_camera_info_fields, xyz_to_cloud_fields)
from depth_nodes.sim.odometry import OdometryNoise
from depth_nodes.sim.radar import FIELDS as RADAR_FIELDS
from depth_nodes.sim.rig import SensorRig
from depth_nodes.sim.route import plan_route, route_trajectory
from depth_nodes.sim.stepper import T0_NS, SimStepper
from depth_nodes.sim.vehicle import Vehicle
from depth_nodes.sim.world import World, WorldSpec, build_world

#: topic -> message type
TOPICS = {
    "sim/world_spec": "std_msgs/msg/String",
    "sim/rig": "std_msgs/msg/String",
    "camera/image_raw": "sensor_msgs/msg/Image",
    "camera/camera_info": "sensor_msgs/msg/CameraInfo",
    "stereo/left/image_rect": "sensor_msgs/msg/Image",
    "stereo/left/camera_info": "sensor_msgs/msg/CameraInfo",
    "stereo/right/image_rect": "sensor_msgs/msg/Image",
    "stereo/right/camera_info": "sensor_msgs/msg/CameraInfo",
    "radar/points": "sensor_msgs/msg/PointCloud2",
    "ground_truth/depth": "sensor_msgs/msg/Image",
    "odom": "nav_msgs/msg/Odometry",
    "ground_truth/odom": "nav_msgs/msg/Odometry",
}
STORAGE = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


class _Msgs:
    """The recorder's messages, built from the shared codec field dicts (no rclpy needed)."""

    def __init__(self):
        self.ts = get_typestore(Stores.ROS2_KILTED)

    def image(self, t_ns: int, frame: str, img: np.ndarray):
        fields = array_to_image_fields(img, "rgb8" if img.dtype == np.uint8 else "32FC1")
        return build_message(self.ts, "sensor_msgs/msg/Image", fields, stamp_ns=t_ns, frame_id=frame)

    def camera_info(self, t_ns: int, cam: PinholeCamera):
        return build_message(self.ts, "sensor_msgs/msg/CameraInfo", pinhole_to_camera_info_fields(cam),
                             stamp_ns=t_ns, frame_id=cam.frame_id)

    def cloud(self, t_ns: int, frame: str, pts: np.ndarray, names=RADAR_FIELDS):
        pts = np.asarray(pts, dtype=np.float32)
        extra = {n: pts[:, i] for i, n in enumerate(names) if i >= 3}
        return build_message(self.ts, "sensor_msgs/msg/PointCloud2", xyz_to_cloud_fields(pts[:, :3], extra),
                             stamp_ns=t_ns, frame_id=frame)

    def odometry(self, t_ns: int, T: np.ndarray, v_body: np.ndarray, w_body: np.ndarray):
        fields = {"child_frame_id": "base_link", "pose": {"pose": matrix_to_pose_fields(T)},
                  "twist": {"twist": array_to_twist_fields(np.concatenate([v_body, w_body]))}}
        return build_message(self.ts, "nav_msgs/msg/Odometry", fields, stamp_ns=t_ns, frame_id="map")

    def string(self, s: str):
        return build_message(self.ts, "std_msgs/msg/String", {"data": s})


def record_bag(out, spec: WorldSpec, duration_s: float = 30.0, storage: str = "mcap",
               rig: SensorRig | None = None, speed: float = 2.0, odom_noise: OdometryNoise | None = None,
               seed: int = 0, progress: bool = True, world: World | None = None) -> dict:
    """Fly the scripted route in ``spec``'s world for ``duration_s`` and write a bag at ``out``.

    Returns a summary dict (message counts per topic, frames, route length).
    """
    if storage not in STORAGE:
        raise ValueError(f"storage must be one of {tuple(STORAGE)}, got {storage!r}")
    if not (np.isfinite(duration_s) and 0 < duration_s <= 3600):
        raise ValueError(f"duration must be in (0, 3600] s, got {duration_s}")
    out = Path(out)
    if out.exists():
        raise ValueError(f"bag output {out} already exists")
    rig = rig or SensorRig()
    world = world or build_world(spec)
    traj = route_trajectory(plan_route(world), speed=speed)
    vehicle = Vehicle(world, world.start, yaw=float(traj.yaw[0]))
    vehicle.follow(traj)
    stepper = SimStepper(world, vehicle, rig, seed=seed, odom_noise=odom_noise, t0_ns=T0_NS)
    m = _Msgs()
    right_cam = rig.right_camera
    counts = {t: 0 for t in TOPICS}
    n_odom = int(np.floor(duration_s * rig.odom_rate_hz + 1e-9))
    with Writer(out, version=9, storage_plugin=STORAGE[storage]) as writer:
        conns = {t: writer.add_connection(t, typ, typestore=m.ts) for t, typ in TOPICS.items()}
        spec_json = json.dumps(world.spec.to_dict() if world.spec else spec.to_dict(), sort_keys=True)
        rig_json = json.dumps(rig.to_dict(), sort_keys=True)
        writer.set_custom_data("depth_nodes.world_spec", spec_json)
        writer.set_custom_data("depth_nodes.rig", rig_json)

        def put(topic: str, t_ns: int, msg) -> None:
            writer.write(conns[topic], t_ns, m.ts.serialize_cdr(msg, TOPICS[topic]))
            counts[topic] += 1

        put("sim/world_spec", T0_NS, m.string(spec_json))
        put("sim/rig", T0_NS, m.string(rig_json))
        for _ in tqdm(range(n_odom), desc="record", unit="step", disable=not progress, mininterval=1.0):
            s = stepper.sample()
            t_ns, fr = s.t_ns, s.frame
            put("ground_truth/odom", t_ns, m.odometry(t_ns, s.T_world_body, s.v_body, s.w_body))
            put("odom", t_ns, m.odometry(t_ns, s.T_odom, s.v_odom, s.w_body))
            if s.camera:
                put("camera/image_raw", t_ns, m.image(t_ns, rig.camera.frame_id, fr.rgb))
                put("camera/camera_info", t_ns, m.camera_info(t_ns, rig.camera))
                put("stereo/left/image_rect", t_ns, m.image(t_ns, rig.camera.frame_id, fr.rgb))
                put("stereo/left/camera_info", t_ns, m.camera_info(t_ns, rig.camera))
                put("stereo/right/image_rect", t_ns, m.image(t_ns, right_cam.frame_id, fr.right))
                put("stereo/right/camera_info", t_ns, m.camera_info(t_ns, right_cam))
                put("ground_truth/depth", t_ns, m.image(t_ns, rig.camera.frame_id, fr.depth))
            if s.radar:
                put("radar/points", t_ns, m.cloud(t_ns, "radar", fr.radar.points))
            stepper.advance()
    return {"bag": str(out), "storage": storage, "duration_s": duration_s, "counts": counts,
            "route_length_m": float(np.sum(np.linalg.norm(np.diff(traj.pos, axis=0), axis=1))),
            "collided": bool(vehicle.state.collided), "world": world.spec.to_dict() if world.spec else None}


def read_world_spec(bag_path) -> WorldSpec:
    """The :class:`WorldSpec` a simulated bag was recorded in (metadata, else the ``sim/world_spec`` topic)."""
    import yaml
    from rosbags.rosbag2 import Reader

    meta = Path(bag_path) / "metadata.yaml"
    if meta.is_file():
        info = (yaml.safe_load(meta.read_text()) or {}).get("rosbag2_bagfile_information", {})
        custom = info.get("custom_data") or {}
        if "depth_nodes.world_spec" in custom:
            return WorldSpec.from_dict(custom["depth_nodes.world_spec"])
    with Reader(bag_path) as reader:
        conns = [c for c in reader.connections if c.topic == "sim/world_spec"]
        for conn, _, raw in reader.messages(connections=conns):
            ts = get_typestore(Stores.ROS2_KILTED)
            return WorldSpec.from_dict(ts.deserialize_cdr(raw, conn.msgtype).data)
    raise ValueError(f"bag {bag_path} has no world spec (not recorded by depth-nodes sim record?)")
