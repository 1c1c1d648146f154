"""Radar points -> sparse image channels for early-fusion networks.

Points are (N, >=3) in the camera optical frame (metres). Each point is
projected with the pinhole model of the network-resolution camera; the pixel
keeps the NEAREST point (largest inverse depth). Output channels:

* ``inv_depth`` (H, W) float32, 1/metres, 0 where no point,
* ``mask`` (H, W) float32, 1 where a point landed, else 0.

An optional square dilation (``dilate`` pixels of radius) spreads each point
to its neighbours, again nearest-wins, which helps at low network resolution.
"""
from __future__ import annotations

import cv2
import numpy as np

from depth_nodes.camera import PinholeCamera

#: Points closer than this (metres, optical z) are ignored as clutter.
MIN_RADAR_DEPTH_M = 0.1


def encode_radar(points, camera: PinholeCamera, dilate: int = 0,
                 min_depth: float = MIN_RADAR_DEPTH_M) -> np.ndarray:
    """Return a (2, H, W) float32 array ``[inv_depth, mask]`` at ``camera``'s resolution.

    ``points``: (N, >=3) optical-frame points or None/empty (-> all zeros).
    ``dilate``: radius in pixels (0 = single pixel).
    """
    if dilate < 0:
        raise ValueError(f"dilate must be >= 0, got {dilate}")
    h, w = camera.height, camera.width
    out = np.zeros((2, h, w), dtype=np.float32)
    if points is None:
        return out
    p = np.asarray(points, dtype=np.float64)
    if p.size == 0:
        return out
    if p.ndim != 2 or p.shape[1] < 3:
        raise ValueError(f"radar points must have shape (N, >=3), got {p.shape}")
    uv, z = camera.project(p[:, :3])
    ok = camera.in_image(uv, z) & (z >= min_depth) & np.all(np.isfinite(uv), axis=1)
    if not np.any(ok):
        return out
    col = np.clip(np.rint(uv[ok, 0]).astype(np.int64), 0, w - 1)
    row = np.clip(np.rint(uv[ok, 1]).astype(np.int64), 0, h - 1)
    inv = (1.0 / z[ok]).astype(np.float32)
    flat = out[0].reshape(-1)
    np.maximum.at(flat, row * w + col, inv)  # nearest point wins
    if dilate:
        kernel = np.ones((2 * dilate + 1, 2 * dilate + 1), np.uint8)
        out[0] = cv2.dilate(out[0], kernel)
    out[1] = (out[0] > 0).astype(np.float32)
    return out


def radar_depth_image(encoded: np.ndarray) -> np.ndarray:
    """(H, W) float32 metres with NaN where no radar point (inverse of the first channel)."""
    inv = np.asarray(encoded)[0]
    with np.errstate(divide="ignore"):
        return np.where(inv > 0, 1.0 / inv, np.nan).astype(np.float32)
