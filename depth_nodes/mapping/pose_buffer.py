"""Time-indexed buffer of body poses (odometry) with interpolated lookup.

Stamps are seconds (float, e.g. ROS header time). Poses are ``T_world_body``
4x4 float64. The camera pose for a depth frame is then
``T_world_cam = buffer.lookup(stamp) @ T_body_cam`` (extrinsics are the
caller's business).

Ordering policy: samples may arrive in any order and are kept sorted by
stamp; a sample whose stamp equals one already stored (within 1 ns) or that
is older than ``newest - max_age_s`` is rejected (``add`` returns False).
Malformed samples (non-finite stamp, non-rigid pose) raise ValueError.
"""
from __future__ import annotations

import bisect
import math
import threading

import numpy as np

from depth_nodes.geometry import check_pose, interpolate_pose

_DUP_TOL_S = 1e-9


class PoseBuffer:
    """Sorted, bounded odometry history.

    ``max_age_s``: samples older than the newest minus this are dropped.
    ``max_extrapolation_s``: a lookup up to this far outside the buffered
    span returns the nearest end sample (zero-order hold); farther raises.
    ``max_samples``: hard bound on the number of stored samples.
    """

    def __init__(self, max_age_s: float = 10.0, max_extrapolation_s: float = 0.05, max_samples: int = 10_000):
        for name, v in (("max_age_s", max_age_s), ("max_extrapolation_s", max_extrapolation_s)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"PoseBuffer {name} must be a finite number >= 0, got {v!r}")
        if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 2:
            raise ValueError(f"PoseBuffer max_samples must be an int >= 2, got {max_samples!r}")
        self.max_age_s = float(max_age_s)
        self.max_extrapolation_s = float(max_extrapolation_s)
        self.max_samples = max_samples
        self._stamps: list[float] = []
        self._poses: list[np.ndarray] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._stamps)

    @property
    def span(self) -> tuple[float, float] | None:
        """(oldest, newest) stamp, or None when empty."""
        with self._lock:
            return (self._stamps[0], self._stamps[-1]) if self._stamps else None

    def clear(self) -> None:
        with self._lock:
            self._stamps.clear()
            self._poses.clear()

    def add(self, stamp: float, T_world_body) -> bool:
        """Insert a sample; False when rejected as duplicate or too old."""
        t = _check_stamp(stamp)
        T = check_pose(T_world_body, "T_world_body").copy()
        with self._lock:
            if self._stamps and t < self._stamps[-1] - self.max_age_s:
                return False
            i = bisect.bisect_left(self._stamps, t)
            for j in (i - 1, i):
                if 0 <= j < len(self._stamps) and abs(self._stamps[j] - t) <= _DUP_TOL_S:
                    return False
            self._stamps.insert(i, t)
            self._poses.insert(i, T)
            cutoff = self._stamps[-1] - self.max_age_s
            drop = max(bisect.bisect_left(self._stamps, cutoff), len(self._stamps) - self.max_samples)
            if drop > 0:
                del self._stamps[:drop]
                del self._poses[:drop]
            return True

    def lookup(self, stamp: float) -> np.ndarray:
        """``T_world_body`` at ``stamp``: interpolated between the bracketing
        samples (linear translation, slerp rotation); nearest end sample within
        ``max_extrapolation_s`` outside the span; ValueError beyond."""
        t = _check_stamp(stamp)
        with self._lock:
            if not self._stamps:
                raise ValueError(f"PoseBuffer is empty: no pose for stamp {t:.6f}")
            t0, t1 = self._stamps[0], self._stamps[-1]
            if t < t0 or t > t1:
                gap = t0 - t if t < t0 else t - t1
                if gap > self.max_extrapolation_s:
                    raise ValueError(
                        f"lookup stamp {t:.6f} is {gap:.3f} s outside the buffered span "
                        f"[{t0:.6f}, {t1:.6f}] (max_extrapolation_s={self.max_extrapolation_s})")
                return (self._poses[0] if t < t0 else self._poses[-1]).copy()
            i = bisect.bisect_left(self._stamps, t)
            if self._stamps[i] - t <= _DUP_TOL_S:
                return self._poses[i].copy()
            ta, tb = self._stamps[i - 1], self._stamps[i]
            return interpolate_pose(self._poses[i - 1], self._poses[i], (t - ta) / (tb - ta))

    def latest(self) -> tuple[float, np.ndarray]:
        """(stamp, T_world_body) of the newest sample; ValueError when empty."""
        with self._lock:
            if not self._stamps:
                raise ValueError("PoseBuffer is empty")
            return self._stamps[-1], self._poses[-1].copy()


def _check_stamp(stamp) -> float:
    if isinstance(stamp, bool) or not isinstance(stamp, (int, float, np.floating, np.integer)):
        raise ValueError(f"stamp must be a number of seconds, got {stamp!r}")
    t = float(stamp)
    if not math.isfinite(t):
        raise ValueError(f"stamp must be finite, got {stamp!r}")
    return t
