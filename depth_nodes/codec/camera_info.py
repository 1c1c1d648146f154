"""sensor_msgs/CameraInfo <-> :class:`depth_nodes.camera.PinholeCamera`, without ROS.

Reads ROS 2 field names (``k``, ``d``, ``r``, ``p``) and falls back to ROS 1
names (``K``, ``D``, ``R``, ``P``) so ROS 1 bags read through rosbags work too.
The frame id comes from ``msg.header.frame_id`` (the camera's optical frame).
"""
from __future__ import annotations

import numpy as np

from depth_nodes.camera import PinholeCamera
from depth_nodes.codec.buffer import get_str, get_uint

_MAX_DISTORTION = 16


def _matrix(msg, name: str, size: int | None) -> np.ndarray:
    value = getattr(msg, name, None)
    if value is None:
        value = getattr(msg, name.upper(), None)
    if value is None:
        raise ValueError(f"CameraInfo has no field {name!r}")
    try:
        arr = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"CameraInfo.{name} is not numeric: {exc}") from None
    if size is not None and arr.size != size:
        raise ValueError(f"CameraInfo.{name} must have {size} elements, got {arr.size}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"CameraInfo.{name} contains non-finite values: {arr}")
    return arr


def camera_info_to_pinhole(msg) -> PinholeCamera:
    """CameraInfo -> PinholeCamera (K, D, R, P, size, distortion model, header frame id).

    The stereo baseline is carried by ``P[0, 3] = -fx * B`` (``PinholeCamera.baseline``).
    """
    d = _matrix(msg, "d", None)
    if d.size > _MAX_DISTORTION:
        raise ValueError(f"CameraInfo.d has {d.size} coefficients > {_MAX_DISTORTION}")
    header = getattr(msg, "header", None)
    frame_id = get_str(header, "frame_id", owner="CameraInfo.header") if header is not None else ""
    model = getattr(msg, "distortion_model", "") or "plumb_bob"
    if not isinstance(model, str):
        raise ValueError(f"CameraInfo.distortion_model must be a str, got {type(model).__name__}")
    return PinholeCamera(
        width=get_uint(msg, "width", owner="CameraInfo"),
        height=get_uint(msg, "height", owner="CameraInfo"),
        K=_matrix(msg, "k", 9),
        D=d,
        P=_matrix(msg, "p", 12),
        R=_matrix(msg, "r", 9),
        frame_id=frame_id or PinholeCamera.__dataclass_fields__["frame_id"].default,
        distortion_model=model,
    )


def pinhole_to_camera_info_fields(cam: PinholeCamera) -> dict:
    """CameraInfo fields for a camera: height, width, distortion_model, d, k, r, p (float64 arrays).

    The header (stamp, ``frame_id = cam.frame_id``) is left to the caller.
    """
    return {
        "height": int(cam.height),
        "width": int(cam.width),
        "distortion_model": cam.distortion_model,
        "d": np.asarray(cam.D, dtype=np.float64).reshape(-1).copy(),
        "k": np.asarray(cam.K, dtype=np.float64).reshape(9).copy(),
        "r": np.asarray(cam.R, dtype=np.float64).reshape(9).copy(),
        "p": np.asarray(cam.P, dtype=np.float64).reshape(12).copy(),
    }
