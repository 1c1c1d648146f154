"""Sensor rig: intrinsics, extrinsics and rates of the simulated drone's sensors.

Body frame ``base_link`` is REP-103 (x forward, y left, z up). The left/main
camera optical frame sits a little ahead of the body origin; the right stereo
camera is the left one shifted by ``+baseline`` along its optical x axis.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from depth_nodes.camera import PinholeCamera
from depth_nodes.geometry import R_BODY_OPTICAL, check_pose, invert_pose, make_pose
from depth_nodes.sim.radar import RadarConfig


def _default_camera() -> PinholeCamera:
    return PinholeCamera.from_fov(320, 240, 90.0, frame_id="camera_optical_frame")


@dataclass(frozen=True)
class SensorRig:
    """Camera intrinsics (left/main), extrinsics ``T_body_*`` (4x4) and sensor rates (Hz)."""

    camera: PinholeCamera = field(default_factory=_default_camera)
    T_body_camera: np.ndarray = field(default_factory=lambda: make_pose(R_BODY_OPTICAL, [0.08, 0.0, 0.0]))
    T_body_radar: np.ndarray = field(default_factory=lambda: make_pose(None, [0.10, 0.0, -0.04]))
    baseline_m: float = 0.10
    radar: RadarConfig = field(default_factory=RadarConfig)
    camera_rate_hz: float = 10.0
    radar_rate_hz: float = 10.0
    odom_rate_hz: float = 50.0

    def __post_init__(self):
        object.__setattr__(self, "T_body_camera", check_pose(self.T_body_camera, "T_body_camera"))
        object.__setattr__(self, "T_body_radar", check_pose(self.T_body_radar, "T_body_radar"))
        if not (np.isfinite(self.baseline_m) and 0.0 < self.baseline_m <= 2.0):
            raise ValueError(f"baseline_m must be in (0, 2], got {self.baseline_m}")
        for name in ("camera_rate_hz", "radar_rate_hz", "odom_rate_hz"):
            if not (np.isfinite(getattr(self, name)) and 0.0 < getattr(self, name) <= 1000.0):
                raise ValueError(f"{name} must be in (0, 1000], got {getattr(self, name)}")

    @classmethod
    def with_size(cls, width: int = 320, height: int = 240, hfov_deg: float = 90.0, **kw) -> "SensorRig":
        """Rig with a camera of the given size and horizontal field of view."""
        return cls(camera=PinholeCamera.from_fov(width, height, hfov_deg, frame_id="camera_optical_frame"), **kw)

    @property
    def right_camera(self) -> PinholeCamera:
        """Right rectified camera (``P[0, 3] = -fx * baseline``)."""
        return self.camera.with_baseline(self.baseline_m, frame_id="camera_right_optical_frame")

    @property
    def T_body_right(self) -> np.ndarray:
        return self.T_body_camera @ make_pose(None, [self.baseline_m, 0.0, 0.0])

    @property
    def T_camera_radar(self) -> np.ndarray:
        """Radar frame -> left camera optical frame."""
        return invert_pose(self.T_body_camera) @ self.T_body_radar

    def to_dict(self) -> dict:
        """JSON-safe description (written to bags as ``sim/rig``)."""
        c = self.camera
        return {
            "camera": {"width": c.width, "height": c.height, "K": c.K.ravel().tolist(), "frame_id": c.frame_id},
            "baseline_m": self.baseline_m,
            "frames": {"body": "base_link", "camera": "camera_optical_frame",
                       "camera_right": "camera_right_optical_frame", "radar": "radar"},
            "T_body_camera": self.T_body_camera.tolist(),
            "T_body_camera_right": self.T_body_right.tolist(),
            "T_body_radar": self.T_body_radar.tolist(),
            "radar": self.radar.to_dict(),
            "rates_hz": {"camera": self.camera_rate_hz, "radar": self.radar_rate_hz, "odom": self.odom_rate_hz},
        }
