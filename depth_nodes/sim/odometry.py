"""Odometry model: ground-truth pose/velocity plus optional drift and white noise.

Drift is a random walk in position (metres per sqrt(metre) travelled) and yaw
(radians per sqrt(metre)), applied in the world frame: ``T_est = T_drift @ T_true``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from depth_nodes.geometry import check_pose, make_pose, yaw_to_rot


@dataclass(frozen=True)
class OdometryNoise:
    """Noise levels (all >= 0); zero everywhere gives ground truth."""

    pos_sigma_m: float = 0.0
    vel_sigma_mps: float = 0.0
    drift_pos_m_per_sqrt_m: float = 0.0
    drift_yaw_rad_per_sqrt_m: float = 0.0

    def __post_init__(self):
        for k, v in asdict(self).items():
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f"odometry {k} must be finite and >= 0, got {v}")


class OdometrySimulator:
    """Stateful odometry source; call once per odometry sample in time order."""

    def __init__(self, noise: OdometryNoise | None = None, rng: np.random.Generator | None = None):
        self.noise = noise or OdometryNoise()
        self.rng = rng or np.random.default_rng(0)
        self._drift_xyz = np.zeros(3)
        self._drift_yaw = 0.0
        self._last_pos: np.ndarray | None = None

    def __call__(self, T_world_body, v_world) -> tuple[np.ndarray, np.ndarray]:
        """Measured (T_world_body (4,4), velocity in the body frame (3,)) for a true state."""
        T = check_pose(T_world_body, "T_world_body")
        n = self.noise
        if self._last_pos is not None:
            step = float(np.linalg.norm(T[:3, 3] - self._last_pos))
            self._drift_xyz += self.rng.normal(0, n.drift_pos_m_per_sqrt_m * np.sqrt(step), 3)
            self._drift_yaw += self.rng.normal(0, n.drift_yaw_rad_per_sqrt_m * np.sqrt(step))
        self._last_pos = T[:3, 3].copy()
        drift = make_pose(yaw_to_rot(self._drift_yaw), self._drift_xyz)
        est = drift @ T
        if n.pos_sigma_m > 0:
            est[:3, 3] += self.rng.normal(0, n.pos_sigma_m, 3)
        v_body = T[:3, :3].T @ np.asarray(v_world, dtype=np.float64)
        if n.vel_sigma_mps > 0:
            v_body = v_body + self.rng.normal(0, n.vel_sigma_mps, 3)
        return est, v_body
