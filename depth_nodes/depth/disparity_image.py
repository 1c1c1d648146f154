"""Disparity images with stereo_msgs/DisparityImage semantics, without ROS.

For a rectified pair with focal length ``f`` (px) and baseline ``T`` (m),
depth ``Z = f * T / d``. The image carries disparities in pixels at the left
camera's resolution; a pixel without a valid disparity holds
``min_disparity - 1`` (the message defines anything below ``min_disparity`` as
invalid). ``valid_window`` is the bounding box of the valid pixels.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from depth_nodes.depth.disparity import MIN_DISPARITY_PX, depth_to_disparity
from depth_nodes.depth.interface import DepthEstimator


@dataclass(frozen=True)
class DisparityRange:
    """Disparity search range and resolution of a matcher, in pixels at the camera resolution."""

    min_px: float
    max_px: float
    delta_px: float


def disparity_range(estimator: DepthEstimator, width: int, net_width: int | None = None) -> DisparityRange:
    """Search range of a stereo estimator for images ``width`` px wide.

    SGBM: ``[0.25, numDisparities]`` in 1/16 px steps. Stereo network:
    ``[0.25, max_disparity * width / net_width]`` (the network searches at its
    own resolution ``net_width``; None means the camera's), continuous (delta 0).
    """
    from depth_nodes.depth.sgbm import SgbmEstimator, default_num_disparities

    if isinstance(estimator, SgbmEstimator):
        nd = estimator.num_disparities or default_num_disparities(width)
        return DisparityRange(MIN_DISPARITY_PX, float(nd), 1.0 / 16.0)
    max_disparity = getattr(getattr(estimator, "model", None), "max_disparity", None)
    if max_disparity is None:
        raise ValueError(f"estimator {estimator.name!r} is not a stereo matcher (no disparity range)")
    scale = width / float(net_width or width)
    return DisparityRange(MIN_DISPARITY_PX, float(max_disparity) * scale, 0.0)


def valid_window(disparity: np.ndarray, min_px: float) -> tuple[int, int, int, int]:
    """``(x_offset, y_offset, width, height)`` bounding the pixels with disparity >= ``min_px`` (zeros if none)."""
    d = np.asarray(disparity)
    valid = np.isfinite(d) & (d >= min_px)
    cols, rows = np.flatnonzero(valid.any(axis=0)), np.flatnonzero(valid.any(axis=1))
    if cols.size == 0:
        return 0, 0, 0, 0
    return int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)


def disparity_image(depth: np.ndarray, fx: float, baseline: float, rng: DisparityRange) -> np.ndarray:
    """(H, W) float32 disparity (px) for a depth image; invalid pixels hold ``rng.min_px - 1``."""
    if not (fx > 0 and baseline > 0):
        raise ValueError(f"fx and baseline must be > 0, got fx={fx}, baseline={baseline}")
    d = depth_to_disparity(depth, fx, baseline)
    ok = np.isfinite(d) & (d >= rng.min_px)
    return np.where(ok, d, np.float32(rng.min_px - 1.0)).astype(np.float32)
