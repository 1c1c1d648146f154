"""Disparity <-> depth for rectified stereo pairs (numpy only)."""
from __future__ import annotations

import numpy as np

#: Smallest disparity (px) converted to depth; smaller values are "too far" -> NaN.
MIN_DISPARITY_PX = 0.25


def disparity_to_depth(disparity, fx: float, baseline: float, min_disparity: float = MIN_DISPARITY_PX) -> np.ndarray:
    """Depth (metres) = fx * baseline / disparity; NaN where disparity < ``min_disparity`` px or NaN."""
    d = np.asarray(disparity, dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(d >= min_disparity, np.float32(fx * baseline) / d, np.nan).astype(np.float32)


def depth_to_disparity(depth, fx: float, baseline: float) -> np.ndarray:
    """Disparity (px) = fx * baseline / depth; NaN where depth is NaN or <= 0."""
    z = np.asarray(depth, dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(z > 0, np.float32(fx * baseline) / z, np.nan).astype(np.float32)
