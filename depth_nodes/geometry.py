"""Shared rigid-body math: SE(3) poses as 4x4 float64 arrays, quaternions, frames.

Conventions
-----------
* A pose ``T_a_b`` maps points expressed in frame ``b`` into frame ``a``:
  ``p_a = T_a_b @ p_b``.
* Quaternions are ``(x, y, z, w)`` as in ROS messages.
* Body frames follow REP-103 (x forward, y left, z up); camera optical frames
  have z forward, x right, y down.
"""
from __future__ import annotations

import numpy as np

#: Rotation taking optical-frame vectors (z fwd, x right, y down) to body-frame
#: vectors (x fwd, y left, z up): body_x = opt_z, body_y = -opt_x, body_z = -opt_y.
R_BODY_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
R_OPTICAL_BODY = R_BODY_OPTICAL.T


def finite_vector(x, n: int, name: str) -> np.ndarray:
    """``x`` as a finite float64 vector of length ``n`` or ValueError naming ``name``."""
    a = np.asarray(x, dtype=np.float64)
    if a.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite, got {a.tolist()}")
    return a


def finite_scalar(x, name: str) -> float:
    """``x`` as a finite float or ValueError naming ``name``."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {x!r}") from None
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    return v


def pose_from_xyz_qxyzw(values, name: str = "extrinsic") -> np.ndarray:
    """4x4 float64 pose from ``[x, y, z, qx, qy, qz, qw]`` (metres, unit quaternion within 1e-3)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size != 7:
        raise ValueError(f"{name} must have 7 values [x, y, z, qx, qy, qz, qw], got {v.size}: {v.tolist()}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} contains non-finite values: {v.tolist()}")
    if abs(float(np.linalg.norm(v[3:])) - 1.0) > 1e-3:
        raise ValueError(f"{name} quaternion {v[3:].tolist()} is not unit length")
    return make_pose(quat_to_rot(v[3:]), v[:3])


def make_pose(rotation=None, translation=None) -> np.ndarray:
    """Build a 4x4 pose from a 3x3 rotation and a translation (defaults: identity)."""
    T = np.eye(4)
    if rotation is not None:
        R = np.asarray(rotation, dtype=np.float64)
        if R.shape != (3, 3):
            raise ValueError(f"rotation must be 3x3, got {R.shape}")
        T[:3, :3] = R
    if translation is not None:
        T[:3, 3] = finite_vector(translation, 3, "translation")
    return T


def check_pose(T, name: str = "pose") -> np.ndarray:
    """Return ``T`` as a float64 4x4 rigid transform or raise ValueError."""
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise ValueError(f"{name} must be 4x4, got {T.shape}")
    if not np.all(np.isfinite(T)):
        raise ValueError(f"{name} contains non-finite values")
    R = T[:3, :3]
    if not np.allclose(R @ R.T, np.eye(3), atol=1e-4) or np.linalg.det(R) < 0:
        raise ValueError(f"{name} rotation is not orthonormal")
    if not np.allclose(T[3], [0.0, 0.0, 0.0, 1.0]):
        raise ValueError(f"{name} last row must be [0, 0, 0, 1], got {T[3]}")
    return T


def invert_pose(T) -> np.ndarray:
    """Inverse of a rigid 4x4 transform (no general matrix inverse)."""
    T = np.asarray(T, dtype=np.float64)
    R = T[:3, :3]
    out = np.eye(4)
    out[:3, :3] = R.T
    out[:3, 3] = -R.T @ T[:3, 3]
    return out


def transform_points(T, points) -> np.ndarray:
    """Apply a 4x4 pose to an (..., 3) array of points."""
    T = np.asarray(T, dtype=np.float64)
    p = np.asarray(points)
    dtype = p.dtype if p.dtype in (np.float32, np.float64) else np.float64
    # a contiguous copy of R^T keeps matmul on its fast path (a transposed view is ~50x slower)
    Rt = np.ascontiguousarray(T[:3, :3].T, dtype=dtype)
    return p.astype(dtype, copy=False) @ Rt + T[:3, 3].astype(dtype)


def quat_to_rot(q) -> np.ndarray:
    """(x, y, z, w) quaternion to a 3x3 rotation matrix (normalises the input)."""
    x, y, z, w = finite_vector(q, 4, "quaternion")
    n = x * x + y * y + z * z + w * w
    if n < 1e-12:
        raise ValueError("quaternion has zero norm")
    s = 2.0 / n
    return np.array([
        [1 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w)],
        [s * (x * y + z * w), 1 - s * (x * x + z * z), s * (y * z - x * w)],
        [s * (x * z - y * w), s * (y * z + x * w), 1 - s * (x * x + y * y)],
    ])


def rot_to_quat(R) -> np.ndarray:
    """3x3 rotation matrix to an (x, y, z, w) unit quaternion with w >= 0."""
    R = np.asarray(R, dtype=np.float64)
    if R.shape != (3, 3):
        raise ValueError(f"rotation must be 3x3, got {R.shape}")
    tr = np.trace(R)
    if tr > 0:
        s = np.sqrt(tr + 1.0) * 2
        q = [(R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s, 0.25 * s]
    elif R[0, 0] > R[1, 1] and R[0, 0] > R[2, 2]:
        s = np.sqrt(1.0 + R[0, 0] - R[1, 1] - R[2, 2]) * 2
        q = [0.25 * s, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s, (R[2, 1] - R[1, 2]) / s]
    elif R[1, 1] > R[2, 2]:
        s = np.sqrt(1.0 + R[1, 1] - R[0, 0] - R[2, 2]) * 2
        q = [(R[0, 1] + R[1, 0]) / s, 0.25 * s, (R[1, 2] + R[2, 1]) / s, (R[0, 2] - R[2, 0]) / s]
    else:
        s = np.sqrt(1.0 + R[2, 2] - R[0, 0] - R[1, 1]) * 2
        q = [(R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, 0.25 * s, (R[1, 0] - R[0, 1]) / s]
    q = np.asarray(q)
    q /= np.linalg.norm(q)
    return -q if q[3] < 0 else q


def yaw_to_rot(yaw: float) -> np.ndarray:
    """Rotation about +z (body up) by ``yaw`` radians."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rot_to_yaw(R) -> float:
    """Heading (rotation about +z) of a rotation matrix, in radians."""
    R = np.asarray(R)
    return float(np.arctan2(R[1, 0], R[0, 0]))


def pose_from_xyz_yaw(xyz, yaw: float) -> np.ndarray:
    """Body pose from a position and a heading (roll = pitch = 0)."""
    return make_pose(yaw_to_rot(yaw), xyz)


def slerp_quat(q0, q1, alpha: float) -> np.ndarray:
    """Spherical interpolation between two (x, y, z, w) quaternions, alpha in [0, 1]."""
    q0 = np.asarray(q0, dtype=np.float64) / np.linalg.norm(q0)
    q1 = np.asarray(q1, dtype=np.float64) / np.linalg.norm(q1)
    d = float(np.dot(q0, q1))
    if d < 0.0:
        q1, d = -q1, -d
    if d > 0.9995:
        q = q0 + alpha * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = np.arccos(np.clip(d, -1.0, 1.0))
    s = np.sin(theta)
    return (np.sin((1 - alpha) * theta) * q0 + np.sin(alpha * theta) * q1) / s


def interpolate_pose(T0, T1, alpha: float) -> np.ndarray:
    """Pose between ``T0`` (alpha=0) and ``T1`` (alpha=1): lerp translation, slerp rotation."""
    q = slerp_quat(rot_to_quat(np.asarray(T0)[:3, :3]), rot_to_quat(np.asarray(T1)[:3, :3]), alpha)
    t = (1 - alpha) * np.asarray(T0)[:3, 3] + alpha * np.asarray(T1)[:3, 3]
    return make_pose(quat_to_rot(q), t)


def camera_pose_from_body(T_world_body, T_body_camera=None) -> np.ndarray:
    """World pose of an optical camera frame mounted on a body.

    ``T_body_camera`` defaults to a camera at the body origin looking along body +x.
    """
    if T_body_camera is None:
        T_body_camera = make_pose(R_BODY_OPTICAL)
    return np.asarray(T_world_body, dtype=np.float64) @ np.asarray(T_body_camera, dtype=np.float64)
