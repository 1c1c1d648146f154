"""Planner inputs: the vehicle state and the newest depth frame.

Both are plain validated dataclasses so a ROS node, the simulator's closed-loop
harness and tests build them the same way. Positions are in the world frame
(``map``, z up), times in seconds.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from depth_nodes.camera import PinholeCamera
from depth_nodes.geometry import check_pose, finite_scalar, finite_vector


@dataclass(frozen=True)
class VehicleState:
    """Vehicle state in the world frame at time ``stamp``.

    ``pos`` metres, ``vel`` m/s, ``acc`` m/s^2 (all (3,)), ``yaw`` radians about +z.
    """

    pos: np.ndarray
    vel: np.ndarray
    acc: np.ndarray
    yaw: float = 0.0
    stamp: float = 0.0

    def __post_init__(self):
        for name in ("pos", "vel", "acc"):
            object.__setattr__(self, name, finite_vector(getattr(self, name), 3, f"state.{name}"))
        object.__setattr__(self, "yaw", finite_scalar(self.yaw, "state.yaw"))
        object.__setattr__(self, "stamp", finite_scalar(self.stamp, "state.stamp"))

    @classmethod
    def at_rest(cls, pos, yaw: float = 0.0, stamp: float = 0.0) -> "VehicleState":
        return cls(pos, np.zeros(3), np.zeros(3), yaw, stamp)


@dataclass(frozen=True)
class DepthFrame:
    """One depth image with the camera that took it and where it was.

    ``depth`` (H, W) float32 metres of optical-frame z, NaN for no return;
    ``T_world_cam`` the 4x4 pose of the optical frame in the world at ``stamp``.
    """

    depth: np.ndarray
    camera: PinholeCamera
    T_world_cam: np.ndarray
    stamp: float = 0.0

    def __post_init__(self):
        if not isinstance(self.camera, PinholeCamera):
            raise ValueError(f"depth frame camera must be a PinholeCamera, got {type(self.camera).__name__}")
        object.__setattr__(self, "depth", self.camera.check_depth(self.depth, "depth frame depth"))
        object.__setattr__(self, "T_world_cam", check_pose(self.T_world_cam, "depth frame T_world_cam"))
        object.__setattr__(self, "stamp", finite_scalar(self.stamp, "depth frame stamp"))
