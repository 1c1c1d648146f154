"""tsdf_mapper_node: depth frames + odometry -> TSDF map (map/points, map/mesh).

Subscribes ``depth/image`` (32FC1 metres or 16UC1 millimetres),
``depth/camera_info``, ``odom`` (nav_msgs/Odometry, ``map`` -> ``base_link``)
and, with ``use_confidence``, ``depth/confidence`` (32FC1, 0..1, same stamp as
the depth frame). Each depth frame is fused at the body pose interpolated at
its stamp times the ``camera_to_body_xyz_qxyzw`` extrinsic (core:
:class:`depth_nodes.mapping.mapper.Mapper`). Frames that are malformed,
mis-sized against the camera info, without a valid pixel or without a pose
never reach the map; they are rejected (logged, counted in diagnostics).

Publishes ``map/points`` (PointCloud2 x, y, z float32 [+ rgb] in ``map``) every
``map_publish_period_s`` and, with ``publish_mesh``, ``map/mesh``
(visualization_msgs/Marker TRIANGLE_LIST). Services (std_srvs/Trigger):
``~/save_map`` writes ``map_file``; ``~/clear_map`` forgets the map.
"""
from __future__ import annotations

import sys

import numpy as np
from geometry_msgs.msg import Point
from nav_msgs.msg import Odometry
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import ColorRGBA
from std_srvs.srv import Trigger
from visualization_msgs.msg import Marker

from depth_nodes.geometry import pose_from_xyz_qxyzw
from depth_nodes.mapping.config import TsdfConfig
from depth_nodes.mapping.mapper import Mapper, check_map_path
from depth_nodes.params import Param
from depth_nodes.ros.conversions import (camera_info_to_pinhole, depth_to_metres, image_to_array, make_header,
                                         pose_msg_to_matrix, stamp_to_sec, xyz_to_cloud_msg)
from depth_nodes.ros.node_base import SENSOR_QOS, BaseNode, run_node

NODE_NAME = "tsdf_mapper_node"

#: Default rig: optical frame 8 cm ahead of the body origin (depth_nodes.sim.rig.SensorRig).
DEFAULT_CAMERA_TO_BODY = [0.08, 0.0, 0.0, -0.5, 0.5, -0.5, 0.5]

PARAMS: tuple[Param, ...] = (
    Param("voxel_size", 0.1, "TSDF voxel edge length (metres).", 0.02, 1.0),
    Param("sdf_trunc", 0.3, "TSDF truncation distance (metres); between 1 and 32 voxels.", 0.02, 10.0),
    Param("depth_min", 0.1, "Depth pixels nearer than this are ignored (metres).", 0.0, 100.0),
    Param("depth_max", 20.0, "Depth pixels farther than this are ignored (metres).", 0.5, 200.0),
    Param("window_radius_m", 30.0, "Blocks farther than this from the camera are dropped after each frame "
          "(metres); 0 keeps everything.", 0.0, 10000.0),
    Param("block_budget", 40000, "Most TSDF blocks kept in memory (8^3 voxels each); farthest dropped first.",
          100, 10_000_000),
    Param("carve_every_n_frames", 2, "Carve observed free space on every n-th frame (1 = every frame).", 1, 100),
    Param("device", "CPU:0", "Open3D device of the TSDF (CUDA falls back to CPU when unavailable).",
          choices=("CPU:0", "CUDA:0")),
    Param("camera_to_body_xyz_qxyzw", list(DEFAULT_CAMERA_TO_BODY),
          "Pose of the depth camera optical frame in base_link: x, y, z (metres), qx, qy, qz, qw."),
    Param("use_confidence", False, "Subscribe depth/confidence (0..1, same stamp as depth/image) and weight "
          "observations by it."),
    Param("pose_max_age_s", 10.0, "Odometry history kept for looking up depth-frame poses (seconds).", 0.5, 600.0),
    Param("pose_max_extrapolation_s", 0.05, "A depth frame at most this far outside the odometry history uses the "
          "nearest pose; farther is rejected (seconds).", 0.0, 1.0),
    Param("map_publish_period_s", 1.0, "Period of the map/points (and map/mesh) publication (seconds).", 0.05, 60.0),
    Param("publish_mesh", False, "Also publish map/mesh (Marker TRIANGLE_LIST; costly for large maps)."),
    Param("map_file", "~/.ros/tsdf_map.npz", "File written by ~/save_map and read by load_map_on_start "
          "(.npz; its directory must exist)."),
    Param("load_map_on_start", False, "Load map_file at start-up (e.g. after a restart) when it exists."),
)


#: Input stamps farther than this ahead of the node's clock are rejected (seconds): one message stamped an
#: hour ahead would otherwise make every later message look old and stall the node for that hour.
MAX_STAMP_AHEAD_S = 1.0


def check_stamp_not_ahead(node: BaseNode, stamp: float) -> None:
    """ValueError when ``stamp`` (s) is more than MAX_STAMP_AHEAD_S ahead of the node's clock (not while
    that clock is still at zero, e.g. no /clock received yet)."""
    now = node.get_clock().now().nanoseconds * 1e-9
    if now > 0 and stamp > now + MAX_STAMP_AHEAD_S:
        raise ValueError(f"stamp {stamp:.6f} is {stamp - now:.3f} s ahead of the clock (limit {MAX_STAMP_AHEAD_S} s)")


def extrinsic_from_param(values, name: str = "camera_to_body_xyz_qxyzw") -> np.ndarray:
    """4x4 pose from a ``[x, y, z, qx, qy, qz, qw]`` parameter; ValueError naming the parameter."""
    return pose_from_xyz_qxyzw(values, f"parameter {name}")


def odometry_pose(msg) -> tuple[float, np.ndarray]:
    """(stamp seconds, ``T_world_body``) of a nav_msgs/Odometry; ValueError on a bad stamp or pose."""
    return stamp_to_sec(msg.header.stamp), pose_msg_to_matrix(msg)


class DepthFrameInput:
    """``depth/image`` + ``depth/camera_info`` subscriptions of ``node``, validated.

    Calls ``on_frame(stamp_s, depth (H, W) float32 metres NaN=no return, camera)``
    for every depth image that decodes and matches the newest camera info;
    rejects the others on ``node`` with the reason, among them frames stamped
    ahead of the clock or not after the newest accepted frame (a looping bag:
    an old stamp would fuse today's depth at an old pose) unless the clock
    itself went back. An image that comes before the first camera info (separate
    best-effort streams need not arrive in order) waits for it, the newest one only.
    An exact repeat of the newest frame's stamp (a publisher sending it again) is not
    rejected: it goes to ``on_repeat(stamp_s)`` when given, and is dropped otherwise.
    """

    def __init__(self, node: BaseNode, on_frame, callback_group=None, on_repeat=None):
        self.node = node
        self.on_frame = on_frame
        self.on_repeat = on_repeat
        self.camera = None
        self._early: Image | None = None  # the newest image received before any camera info
        self.newest_stamp: float | None = None
        node.create_subscription(CameraInfo, "depth/camera_info", self._on_info, SENSOR_QOS,
                                 callback_group=callback_group)
        node.create_subscription(Image, "depth/image", self._on_depth, SENSOR_QOS, callback_group=callback_group)

    def _on_info(self, msg: CameraInfo) -> None:
        self.node.received("depth/camera_info")
        try:
            self.camera = camera_info_to_pinhole(msg)
        except ValueError as exc:
            self.node.reject("depth/camera_info", str(exc))
            return
        early, self._early = self._early, None
        if early is not None:
            self._take_depth(early)

    def _on_depth(self, msg: Image) -> None:
        self.node.received("depth/image")
        self._take_depth(msg)

    def _take_depth(self, msg: Image) -> None:
        if self.camera is None:
            if self._early is not None:
                self.node.reject("depth/image", "no depth/camera_info received yet")
            self._early = msg
            return
        try:
            stamp = stamp_to_sec(msg.header.stamp)
            if stamp == self.newest_stamp:
                if self.on_repeat is not None:
                    self.on_repeat(stamp)
                return
            check_stamp_not_ahead(self.node, stamp)
            self._check_order(stamp)
            depth = depth_to_metres(msg, max_side=self.node.param("max_image_side"))
            cam = self.camera
            if depth.shape != (cam.height, cam.width):
                raise ValueError(f"depth image {depth.shape[1]}x{depth.shape[0]} does not match camera_info "
                                 f"{cam.width}x{cam.height}")
        except ValueError as exc:
            self.node.reject("depth/image", str(exc))
            return
        self.newest_stamp = stamp
        self.on_frame(stamp, depth, cam)

    def _check_order(self, stamp: float) -> None:
        newest = self.newest_stamp
        if newest is None or stamp > newest:
            return
        now = self.node.get_clock().now().nanoseconds * 1e-9
        if now + MAX_STAMP_AHEAD_S < newest:  # the clock went back (e.g. a bag restarted with its clock)
            return
        raise ValueError(f"stamp {stamp:.6f} is not newer than the newest depth frame {newest:.6f}")


def tsdf_config_from_params(node: BaseNode) -> TsdfConfig:
    p = node.param
    radius = p("window_radius_m")
    return TsdfConfig(voxel_size=p("voxel_size"), sdf_trunc=p("sdf_trunc"), depth_min=p("depth_min"),
                      depth_max=p("depth_max"), device=p("device"), block_budget=p("block_budget"),
                      window_radius_m=radius if radius > 0 else None,
                      weight_from_confidence=p("use_confidence"), carve_every_n_frames=p("carve_every_n_frames"))


def mapper_from_params(node: BaseNode) -> Mapper:
    """The Mapper described by a node's parameters (ValueError naming the bad one)."""
    return Mapper(tsdf_config_from_params(node), extrinsic_from_param(node.param("camera_to_body_xyz_qxyzw")),
                  max_age_s=node.param("pose_max_age_s"),
                  max_extrapolation_s=node.param("pose_max_extrapolation_s"))


def pack_rgb(colors: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 RGB -> (N,) float32 PCL-packed ``rgb`` field values."""
    c = colors.astype(np.uint32)
    return ((c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]).view(np.float32)


class TsdfMapperNode(BaseNode):
    """Glue between depth/odometry topics and a (possibly shared) :class:`Mapper`."""

    def __init__(self, mapper: Mapper | None = None, **kwargs):
        super().__init__(NODE_NAME, PARAMS, **kwargs)
        self.mapper = mapper if mapper is not None else mapper_from_params(self)
        self._confidence: tuple[float, np.ndarray] | None = None
        self._pending: tuple | None = None  # newest frame waiting for odometry at its stamp
        self.create_subscription(Odometry, "odom", self._on_odom, SENSOR_QOS)
        self.depth_input = DepthFrameInput(self, self._on_frame)
        if self.param("use_confidence"):
            self.create_subscription(Image, "depth/confidence", self._on_confidence, SENSOR_QOS)
        self.points_pub = self.create_publisher(PointCloud2, "map/points",
                                                QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
        self.mesh_pub = (self.create_publisher(Marker, "map/mesh", QoSProfile(depth=1)) if self.param("publish_mesh")
                         else None)
        self.create_service(Trigger, "~/save_map", self._on_save)
        self.create_service(Trigger, "~/clear_map", self._on_clear)
        if self.param("load_map_on_start"):
            self._load_on_start()
        self.create_timer(self.param("map_publish_period_s"), self.publish_map)

    # ------------------------------------------------------------------ inputs
    def _on_odom(self, msg: Odometry) -> None:
        self.received("odom")
        try:
            stamp, T = odometry_pose(msg)
            check_stamp_not_ahead(self, stamp)
            span = self.mapper.poses.span
            repeat = span is not None and stamp == span[1]  # the newest sample again (a repeated message)
            if not self.mapper.add_odometry(stamp, T) and not repeat:
                self.reject("odom", f"stamp {stamp:.6f} is a duplicate or older than the pose history")
        except ValueError as exc:
            self.reject("odom", str(exc))
            return
        if self._pending is not None and not self.mapper.awaits_odometry(self._pending[0]):
            frame, self._pending = self._pending, None
            self._integrate(*frame)

    def _on_confidence(self, msg: Image) -> None:
        self.received("depth/confidence")
        try:
            conf = image_to_array(msg, max_side=self.param("max_image_side"))
            if msg.encoding != "32FC1" or conf.ndim != 2:
                raise ValueError(f"confidence must be a 32FC1 image, got encoding {msg.encoding!r}")
            self._confidence = (stamp_to_sec(msg.header.stamp), conf.astype(np.float32))
        except ValueError as exc:
            self.reject("depth/confidence", str(exc))

    def _matching_confidence(self, stamp: float, shape) -> np.ndarray | None:
        c = self._confidence
        if c is not None and abs(c[0] - stamp) < 1e-6 and c[1].shape == shape:
            return c[1]
        return None

    def _on_frame(self, stamp: float, depth: np.ndarray, camera) -> None:
        conf = self._matching_confidence(stamp, depth.shape) if self.param("use_confidence") else None
        # odometry lags the depth frame (or none came yet): integrate when it arrives
        if self.mapper.poses.span is None or self.mapper.awaits_odometry(stamp):
            if self._pending is not None:
                why = "no odometry received yet" if self.mapper.poses.span is None else "odometry did not reach it"
                self.reject("depth/image", f"frame {self._pending[0]:.6f} superseded: {why}")
            self._pending = (stamp, depth, camera, conf)
            return
        self._integrate(stamp, depth, camera, conf)

    def _integrate(self, stamp: float, depth: np.ndarray, camera, conf) -> None:
        try:
            with self.stage("integrate"):
                result = self.mapper.integrate(stamp, depth, camera, confidence=conf)
        except RuntimeError as exc:  # an Open3D kernel error must not kill the node (and the planner with it)
            self.reject("depth/image", f"TSDF integration failed: {str(exc)[-300:]}")
            return
        if not result.accepted:
            self.reject("depth/image", result.reason)

    # ----------------------------------------------------------------- outputs
    def publish_map(self) -> None:
        """Publish map/points (and map/mesh): only to subscribers, since extraction holds the map
        lock for a while and the planner sharing this map waits for it."""
        header = make_header(self.get_clock().now(), "map")
        if self.points_pub.get_subscription_count() > 0:
            with self.stage("extract"):
                pts, _, colors = self.mapper.surface_points()
            extra = {"rgb": pack_rgb(colors)} if colors is not None else None
            self.points_pub.publish(xyz_to_cloud_msg(pts, extra, header=header))
        if self.mesh_pub is not None and self.mesh_pub.get_subscription_count() > 0:
            self.mesh_pub.publish(self.mesh_marker(header))

    def mesh_marker(self, header) -> Marker:
        verts, tris, colors = self.mapper.mesh()
        m = Marker(header=header, ns="tsdf_mesh", id=0, type=Marker.TRIANGLE_LIST, action=Marker.ADD)
        m.pose.orientation.w = 1.0
        m.scale.x = m.scale.y = m.scale.z = 1.0
        m.color = ColorRGBA(r=0.7, g=0.7, b=0.75, a=1.0)
        corners = verts[tris.reshape(-1)].astype(np.float64)
        m.points = [Point(x=x, y=y, z=z) for x, y, z in corners.tolist()]
        if colors is not None:
            c = colors[tris.reshape(-1)].astype(np.float64) / 255.0
            m.colors = [ColorRGBA(r=r, g=g, b=b, a=1.0) for r, g, b in c.tolist()]
        return m

    # ---------------------------------------------------------------- services
    def _on_save(self, request, response):
        try:
            path = check_map_path(self.param("map_file"))
            self.mapper.save(path)
        except (ValueError, OSError) as exc:
            response.success, response.message = False, f"save_map failed: {exc}"
        else:
            response.success, response.message = True, f"saved {self.mapper.stats()['blocks']} blocks to {path}"
        return response

    def _on_clear(self, request, response):
        self.mapper.clear()
        response.success, response.message = True, "map cleared"
        return response

    def _load_on_start(self) -> None:
        try:
            path = check_map_path(self.param("map_file"))
            if not path.exists():
                self.get_logger().warning(f"load_map_on_start: {path} does not exist; starting with an empty map")
                return
            self.mapper.load(path)
            self.get_logger().info(f"loaded map {path} ({self.mapper.stats()['blocks']} blocks)")
        except (ValueError, OSError) as exc:
            self.get_logger().error(f"load_map_on_start: {exc}; starting with an empty map")


def main(args=None) -> int:
    return run_node(lambda context: TsdfMapperNode(context=context), args)


if __name__ == "__main__":
    sys.exit(main())
