"""Pose and twist messages <-> numpy, without ROS (duck-typed messages).

A pose message is anything that, after unwrapping ``.pose`` attributes
(Odometry -> PoseWithCovariance -> Pose, PoseStamped -> Pose), has
``position``/``orientation`` (geometry_msgs/Pose) or, after unwrapping
``.transform``, ``translation``/``rotation`` (geometry_msgs/Transform). Poses
are 4x4 float64 ``T_parent_child`` (header frame <- child frame); quaternions
are (x, y, z, w).
"""
from __future__ import annotations

import numpy as np

from depth_nodes.geometry import check_pose, make_pose, quat_to_rot, rot_to_quat

_MAX_UNWRAP = 4
#: Like tf2, reject quaternions whose squared norm is further than this from 1.
QUAT_NORM2_TOLERANCE = 0.01


def _unwrap(msg, attr: str):
    for _ in range(_MAX_UNWRAP):
        inner = getattr(msg, attr, None)
        if inner is None:
            return msg
        msg = inner
    raise ValueError(f"message nests .{attr} more than {_MAX_UNWRAP} levels")


def _vector(obj, names: str, what: str) -> np.ndarray:
    try:
        v = np.array([float(getattr(obj, n)) for n in names], dtype=np.float64)
    except (AttributeError, TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"{what} needs numeric fields {tuple(names)}: {exc}") from None
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{what} must be finite, got {v}")
    return v


def _rotation(q: np.ndarray, what: str) -> np.ndarray:
    with np.errstate(over="ignore"):  # huge components give inf, rejected below
        norm2 = float(np.dot(q, q))
    if not abs(norm2 - 1.0) <= QUAT_NORM2_TOLERANCE:
        raise ValueError(f"{what} quaternion {q} is not normalised (|q|^2={norm2:.6g}, "
                         f"tolerance {QUAT_NORM2_TOLERANCE})")
    return quat_to_rot(q)


def pose_msg_to_matrix(msg) -> np.ndarray:
    """Pose / PoseStamped / PoseWithCovariance(Stamped) / Odometry / Transform(Stamped) -> 4x4 pose.

    The quaternion must be unit length within ``QUAT_NORM2_TOLERANCE`` (as tf2 requires).
    """
    inner = _unwrap(msg, "pose")
    if hasattr(inner, "position") and hasattr(inner, "orientation"):
        t = _vector(inner.position, "xyz", "pose position")
        q = _vector(inner.orientation, "xyzw", "pose orientation")
    else:
        inner = _unwrap(inner, "transform")
        if not (hasattr(inner, "translation") and hasattr(inner, "rotation")):
            raise ValueError(f"{type(msg).__name__} has neither position/orientation nor translation/rotation")
        t = _vector(inner.translation, "xyz", "transform translation")
        q = _vector(inner.rotation, "xyzw", "transform rotation")
    return make_pose(_rotation(q, "orientation"), t)


def matrix_to_pose_fields(T) -> dict:
    """4x4 rigid pose -> dict(position=(x, y, z), orientation=(x, y, z, w)) as float tuples."""
    T = check_pose(T)
    q = rot_to_quat(T[:3, :3])
    return {"position": tuple(float(v) for v in T[:3, 3]),
            "orientation": tuple(float(v) for v in q)}


def twist_msg_to_array(msg) -> np.ndarray:
    """Twist / TwistStamped / TwistWithCovariance / Odometry -> (6,) [vx, vy, vz, wx, wy, wz] (m/s, rad/s)."""
    inner = _unwrap(msg, "twist")
    if not (hasattr(inner, "linear") and hasattr(inner, "angular")):
        raise ValueError(f"{type(msg).__name__} has no twist linear/angular")
    return np.concatenate([_vector(inner.linear, "xyz", "twist linear"),
                           _vector(inner.angular, "xyz", "twist angular")])


def array_to_twist_fields(twist) -> dict:
    """(6,) [vx, vy, vz, wx, wy, wz] -> dict(linear=(x, y, z), angular=(x, y, z))."""
    v = np.asarray(twist, dtype=np.float64)
    if v.shape != (6,) or not np.all(np.isfinite(v)):
        raise ValueError(f"twist must be 6 finite values [vx, vy, vz, wx, wy, wz], got shape {v.shape}: {v}")
    return {"linear": tuple(float(x) for x in v[:3]), "angular": tuple(float(x) for x in v[3:])}
