"""Message codecs: ROS message fields <-> numpy, with no rclpy or message-package imports.

Readers accept any object with the standard ROS attribute names (rclpy
messages, rosbags dataclasses from bag files, SimpleNamespace), so bag replay
and tests use the same code as the nodes. Writers return plain dicts of field
values; ``depth_nodes.ros.conversions`` turns them into rclpy messages.
Every reader raises ValueError (naming the field and values) on malformed input.
"""
from __future__ import annotations

from depth_nodes.codec.camera_info import camera_info_to_pinhole, pinhole_to_camera_info_fields
from depth_nodes.codec.image import (
    array_to_image_fields,
    depth_to_metres,
    image_to_array,
    image_to_rgb,
    pixel_format,
)
from depth_nodes.codec.pointcloud import (
    PointFieldSpec,
    cloud_to_structured,
    cloud_to_xyz,
    structured_to_cloud_fields,
    xyz_to_cloud_fields,
)
from depth_nodes.codec.pose import (
    array_to_twist_fields,
    matrix_to_pose_fields,
    pose_msg_to_matrix,
    twist_msg_to_array,
)
from depth_nodes.codec.stamp import sec_to_stamp_fields, stamp_to_ns, stamp_to_sec

__all__ = [
    "PointFieldSpec",
    "array_to_image_fields",
    "array_to_twist_fields",
    "camera_info_to_pinhole",
    "cloud_to_structured",
    "cloud_to_xyz",
    "depth_to_metres",
    "image_to_array",
    "image_to_rgb",
    "matrix_to_pose_fields",
    "pinhole_to_camera_info_fields",
    "pixel_format",
    "pose_msg_to_matrix",
    "sec_to_stamp_fields",
    "stamp_to_ns",
    "stamp_to_sec",
    "structured_to_cloud_fields",
    "twist_msg_to_array",
    "xyz_to_cloud_fields",
]
