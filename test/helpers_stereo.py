"""Synthetic stereo pairs shared by the SGBM and stereo network tests."""
from __future__ import annotations

import cv2
import numpy as np


def textured_plane(rng: np.random.Generator, disparity: int, w: int = 320, h: int = 240):
    """(left, right) uint8 RGB of a fronto-parallel plane at ``disparity`` px, with a smooth random
    texture (sigma 3 px) that still has detail at half size: left(x) = right(x - disparity)."""
    grey = cv2.GaussianBlur(rng.uniform(0, 255, (h, w + disparity)).astype(np.float32), (0, 0), 3.0)
    tex = np.clip((grey - grey.mean()) * 3 + 128, 0, 255).astype(np.uint8)
    wide = np.repeat(tex[..., None], 3, axis=2)
    return np.ascontiguousarray(wide[:, :w]), np.ascontiguousarray(wide[:, disparity:])
