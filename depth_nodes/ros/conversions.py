"""rclpy message construction on top of :mod:`depth_nodes.codec`, plus the codec readers.

Readers (``image_to_array``, ``cloud_to_xyz`` ...) are the duck-typed codec
functions re-exported, so nodes import everything from here. Writers build
real rclpy messages.

Speed: generated rclpy setters copy ``data`` element by element unless handed
an ``array.array('B')`` while field checking is on; otherwise even an
``array.array`` is copied again. So messages are created with
``check_fields=True`` (where the rosidl generator supports it) and ``data`` is
one ``array.array('B')`` filled by a single memcpy from the numpy buffer
(measured with ``depth-nodes bench conversions``).
"""
from __future__ import annotations

from array import array as _array

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Pose, PoseStamped, Quaternion, Twist, Vector3
from nav_msgs.msg import Odometry
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header

from depth_nodes.camera import PinholeCamera
from depth_nodes.codec import (
    array_to_image_fields,
    array_to_twist_fields,
    camera_info_to_pinhole,
    cloud_to_structured,
    cloud_to_xyz,
    depth_to_metres,
    image_to_array,
    image_to_rgb,
    matrix_to_pose_fields,
    pinhole_to_camera_info_fields,
    pose_msg_to_matrix,
    sec_to_stamp_fields,
    stamp_to_ns,
    stamp_to_sec,
    structured_to_cloud_fields,
    twist_msg_to_array,
    xyz_to_cloud_fields,
)

__all__ = [
    "array_to_image_msg", "camera_info_to_pinhole", "cloud_to_structured", "cloud_to_xyz",
    "depth_to_metres", "image_to_array", "image_to_rgb", "make_header", "pinhole_to_camera_info_msg",
    "pose_msg_to_matrix", "pose_to_odometry_msg", "pose_to_pose_msg", "pose_to_pose_stamped_msg",
    "sec_to_stamp", "stamp_to_ns", "stamp_to_sec", "structured_to_cloud_msg", "twist_msg_to_array",
    "xyz_to_cloud_msg",
]


def _new(cls):
    """Empty message whose setters take an ``array.array`` without copying it (see module doc)."""
    return cls(check_fields=True) if "_check_fields" in cls.__slots__ else cls()


def _byte_array(data: np.ndarray) -> _array:
    """One memcpy of a uint8 buffer into the ``array.array('B')`` rclpy stores."""
    out = _array("B")
    out.frombytes(memoryview(np.ascontiguousarray(data)))
    return out


def sec_to_stamp(seconds: float) -> Time:
    """Seconds -> builtin_interfaces/Time."""
    sec, nanosec = sec_to_stamp_fields(seconds)
    return Time(sec=sec, nanosec=nanosec)


def make_header(stamp=None, frame_id: str = "", header: Header | None = None) -> Header:
    """A Header from ``header`` (used as is), or from ``stamp`` and ``frame_id``.

    ``stamp`` may be a builtin_interfaces/Time, an ``rclpy.time.Time``, any
    object with ``sec``/``nanosec`` (e.g. from a bag), float seconds, or None (zero).
    """
    if header is not None:
        return header
    if stamp is None:
        stamp = Time()
    elif hasattr(stamp, "to_msg"):
        stamp = stamp.to_msg()
    elif isinstance(stamp, (int, float, np.integer, np.floating)) and not isinstance(stamp, bool):
        stamp = sec_to_stamp(float(stamp))
    elif not isinstance(stamp, Time):
        ns = stamp_to_ns(stamp)
        stamp = Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)
    return Header(stamp=stamp, frame_id=str(frame_id))


def array_to_image_msg(array, encoding: str, *, stamp=None, frame_id: str = "",
                       header: Header | None = None) -> Image:
    """sensor_msgs/Image from an (H, W[, C]) array whose dtype matches ``encoding``.

    Depth: float32 metres with ``32FC1`` (NaN = no return) or uint16 mm with ``16UC1``.
    """
    f = array_to_image_fields(array, encoding)
    msg = _new(Image)
    msg.header = make_header(stamp, frame_id, header)
    msg.height, msg.width, msg.step = f["height"], f["width"], f["step"]
    msg.encoding, msg.is_bigendian = f["encoding"], f["is_bigendian"]
    msg.data = _byte_array(f["data"])
    return msg


def pinhole_to_camera_info_msg(cam: PinholeCamera, *, stamp=None, header: Header | None = None) -> CameraInfo:
    """sensor_msgs/CameraInfo for a camera; header frame id is ``cam.frame_id`` unless ``header`` is given."""
    f = pinhole_to_camera_info_fields(cam)
    msg = CameraInfo()
    msg.header = make_header(stamp, cam.frame_id, header)
    msg.height, msg.width, msg.distortion_model = f["height"], f["width"], f["distortion_model"]
    msg.d = _array("d", f["d"].tolist())
    msg.k, msg.r, msg.p = f["k"], f["r"], f["p"]
    return msg


def _cloud_msg(f: dict, stamp, frame_id: str, header: Header | None) -> PointCloud2:
    msg = _new(PointCloud2)
    msg.header = make_header(stamp, frame_id, header)
    msg.height, msg.width = f["height"], f["width"]
    msg.fields = [PointField(name=s.name, offset=s.offset, datatype=s.datatype, count=s.count)
                  for s in f["fields"]]
    msg.is_bigendian, msg.is_dense = bool(f["is_bigendian"]), f["is_dense"]
    msg.point_step, msg.row_step = f["point_step"], f["row_step"]
    msg.data = _byte_array(f["data"])
    return msg


def structured_to_cloud_msg(points: np.ndarray, *, is_dense: bool | None = None, stamp=None,
                            frame_id: str = "", header: Header | None = None) -> PointCloud2:
    """sensor_msgs/PointCloud2 from a structured array (N,) or organised (H, W), layout kept."""
    return _cloud_msg(structured_to_cloud_fields(points, is_dense=is_dense), stamp, frame_id, header)


def xyz_to_cloud_msg(points, extra: dict | None = None, *, is_dense: bool | None = None, stamp=None,
                     frame_id: str = "", header: Header | None = None) -> PointCloud2:
    """sensor_msgs/PointCloud2 with float32 x, y, z (metres, ``frame_id``) and optional extra fields."""
    return _cloud_msg(xyz_to_cloud_fields(points, extra, is_dense=is_dense), stamp, frame_id, header)


def pose_to_pose_msg(T) -> Pose:
    """geometry_msgs/Pose from a 4x4 rigid transform."""
    f = matrix_to_pose_fields(T)
    x, y, z = f["position"]
    qx, qy, qz, qw = f["orientation"]
    return Pose(position=Point(x=x, y=y, z=z), orientation=Quaternion(x=qx, y=qy, z=qz, w=qw))


def pose_to_pose_stamped_msg(T, *, stamp=None, frame_id: str = "map",
                             header: Header | None = None) -> PoseStamped:
    """geometry_msgs/PoseStamped of ``T_frame_child`` in ``frame_id``."""
    return PoseStamped(header=make_header(stamp, frame_id, header), pose=pose_to_pose_msg(T))


def pose_to_odometry_msg(T, twist=None, *, stamp=None, frame_id: str = "odom", child_frame_id: str = "base_link",
                         header: Header | None = None) -> Odometry:
    """nav_msgs/Odometry: pose ``T_frame_child`` and twist (6,) [v (m/s), w (rad/s)] in the child frame."""
    msg = Odometry(header=make_header(stamp, frame_id, header), child_frame_id=child_frame_id)
    msg.pose.pose = pose_to_pose_msg(T)
    if twist is not None:
        f = array_to_twist_fields(twist)
        msg.twist.twist = Twist(linear=Vector3(x=f["linear"][0], y=f["linear"][1], z=f["linear"][2]),
                                angular=Vector3(x=f["angular"][0], y=f["angular"][1], z=f["angular"][2]))
    return msg
