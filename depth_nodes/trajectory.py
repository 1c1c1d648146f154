"""Time-parametrised trajectory: the planner's output and the vehicle's input.

All arrays share the sample axis K. Positions are in the world frame (`map`,
z up), times are seconds relative to ``stamp`` (the absolute time of sample 0).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Trajectory:
    t: np.ndarray      # (K,) seconds from stamp, strictly increasing, t[0] == 0
    pos: np.ndarray    # (K, 3) metres
    vel: np.ndarray    # (K, 3) m/s
    acc: np.ndarray    # (K, 3) m/s^2
    yaw: np.ndarray    # (K,) radians, heading about +z
    stamp: float = 0.0

    def __post_init__(self):
        t = np.asarray(self.t, dtype=np.float64).ravel()
        k = t.size
        if k < 1:
            raise ValueError("trajectory needs at least one sample")
        if not np.all(np.isfinite(t)) or (k > 1 and np.any(np.diff(t) <= 0)):
            raise ValueError("trajectory times must be finite and strictly increasing")
        for name, shape in (("pos", (k, 3)), ("vel", (k, 3)), ("acc", (k, 3)), ("yaw", (k,))):
            a = np.asarray(getattr(self, name), dtype=np.float64)
            if a.shape != shape:
                raise ValueError(f"trajectory {name} must have shape {shape}, got {a.shape}")
            if not np.all(np.isfinite(a)):
                raise ValueError(f"trajectory {name} contains non-finite values")
            object.__setattr__(self, name, a)
        object.__setattr__(self, "t", t)
        if not np.isfinite(self.stamp):
            raise ValueError(f"trajectory stamp must be finite, got {self.stamp}")

    @property
    def duration(self) -> float:
        return float(self.t[-1])

    def sample(self, t_query: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """State at ``t_query`` seconds after ``stamp``: (pos, vel, acc, yaw).

        Linear interpolation between samples; clamped to the first/last sample
        (after the end the vehicle holds the final position with zero velocity
        if the final velocity is zero, otherwise the last sample is returned).
        """
        tq = float(np.clip(t_query, self.t[0], self.t[-1]))
        i = int(np.searchsorted(self.t, tq, side="right") - 1)
        i = min(max(i, 0), self.t.size - 1)
        if i == self.t.size - 1:
            return self.pos[i].copy(), self.vel[i].copy(), self.acc[i].copy(), float(self.yaw[i])
        a = (tq - self.t[i]) / (self.t[i + 1] - self.t[i])
        lerp = lambda x: (1 - a) * x[i] + a * x[i + 1]  # noqa: E731
        dyaw = np.arctan2(np.sin(self.yaw[i + 1] - self.yaw[i]), np.cos(self.yaw[i + 1] - self.yaw[i]))
        return lerp(self.pos), lerp(self.vel), lerp(self.acc), float(self.yaw[i] + a * dyaw)
