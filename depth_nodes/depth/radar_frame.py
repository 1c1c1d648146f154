"""Radar returns into the camera optical frame, from a static extrinsic (no tf2).

A radar frame is (N, 5) float32 ``x, y, z, velocity, intensity`` (metres in
the radar frame, m/s range rate, relative intensity). Extrinsics are given as
``[x, y, z, qx, qy, qz, qw]`` (translation in metres, unit quaternion): the pose
``T_camera_radar`` that maps radar-frame points into the camera optical frame.
Range rate and intensity are properties of the return, so they are kept as is.
"""
from __future__ import annotations

import numpy as np

from depth_nodes.geometry import transform_points

#: Point fields of a radar frame, in column order.
RADAR_FIELDS = ("x", "y", "z", "velocity", "intensity")


def radar_points_from_fields(fields: np.ndarray) -> np.ndarray:
    """(N, 5) float32 radar frame from a structured point array (e.g. a decoded PointCloud2).

    ``x``, ``y``, ``z`` are required; ``velocity`` and ``intensity`` are 0 when
    absent. Points with a non-finite coordinate are dropped.
    """
    names = getattr(getattr(fields, "dtype", None), "names", None) or ()
    missing = [c for c in RADAR_FIELDS[:3] if c not in names]
    if missing:
        raise ValueError(f"radar cloud lacks field(s) {missing}; has {list(names)}")
    flat = fields.reshape(-1)
    out = np.zeros((flat.shape[0], len(RADAR_FIELDS)), dtype=np.float32)
    for i, c in enumerate(RADAR_FIELDS):
        if c in names:
            if flat.dtype.fields[c][0].shape:
                raise ValueError(f"radar cloud field {c!r} must have count 1")
            out[:, i] = flat[c]
    return out[np.all(np.isfinite(out[:, :3]), axis=1)]


def radar_to_camera(points, T_camera_radar) -> np.ndarray:
    """Move (N, 5) radar points into the camera optical frame (xyz transformed, the rest kept)."""
    p = np.asarray(points, dtype=np.float32)
    if p.ndim != 2 or p.shape[1] != len(RADAR_FIELDS):
        raise ValueError(f"radar points must have shape (N, 5) {list(RADAR_FIELDS)}, got {p.shape}")
    out = p.copy()
    out[:, :3] = transform_points(T_camera_radar, p[:, :3].astype(np.float64))
    return out
