"""Kinematic multirotor that tracks a :class:`~depth_nodes.trajectory.Trajectory`.

State is position/velocity in the world frame (``map``, z up) plus heading.
Tracking is a feed-forward + PD acceleration command clipped to the limits; the
body tilts with horizontal acceleration like a real multirotor. A collision is
flagged when ``world.distance(centre) < radius``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from depth_nodes.geometry import make_pose, yaw_to_rot
from depth_nodes.sim.world import World
from depth_nodes.trajectory import Trajectory

GRAVITY = 9.81


@dataclass
class VehicleState:
    t: float               # seconds (same clock as Trajectory.stamp)
    pos: np.ndarray        # (3,) metres, world
    vel: np.ndarray        # (3,) m/s, world
    acc: np.ndarray        # (3,) m/s^2, world
    yaw: float             # radians
    collided: bool = False


class Vehicle:
    """Point-mass multirotor with velocity, acceleration and yaw-rate limits."""

    def __init__(self, world: World | None, pos, yaw: float = 0.0, t: float = 0.0, max_vel: float = 4.0,
                 max_acc: float = 4.0, max_yaw_rate: float = 2.0, radius: float = 0.25,
                 kp: float = 4.0, kd: float = 3.0, tilt: bool = True):
        for name, v in (("max_vel", max_vel), ("max_acc", max_acc), ("max_yaw_rate", max_yaw_rate),
                        ("radius", radius)):
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be > 0, got {v}")
        self.world = world
        self.limits = (float(max_vel), float(max_acc), float(max_yaw_rate))
        self.radius = float(radius)
        self.gains = (float(kp), float(kd))
        self.tilt = tilt
        p = np.asarray(pos, dtype=np.float64).reshape(3)
        self.state = VehicleState(t=float(t), pos=p, vel=np.zeros(3), acc=np.zeros(3), yaw=float(yaw))
        self.trajectory: Trajectory | None = None

    def follow(self, trajectory: Trajectory) -> None:
        """Track this trajectory from now on (its ``stamp`` is on the vehicle clock)."""
        if not isinstance(trajectory, Trajectory):
            raise ValueError(f"trajectory must be a Trajectory, got {type(trajectory).__name__}")
        self.trajectory = trajectory

    def step(self, dt: float) -> VehicleState:
        """Advance ``dt`` seconds; without a trajectory the vehicle brakes to hover."""
        if not (np.isfinite(dt) and 0 < dt <= 1.0):
            raise ValueError(f"dt must be in (0, 1] s, got {dt}")
        max_vel, max_acc, max_yaw_rate = self.limits
        kp, kd = self.gains
        s = self.state
        t_new = s.t + dt
        if self.trajectory is not None:
            p_ref, v_ref, a_ref, yaw_ref = self.trajectory.sample(s.t - self.trajectory.stamp)
            acc = a_ref + kp * (p_ref - s.pos) + kd * (v_ref - s.vel)
        else:
            acc, yaw_ref = -kd * s.vel, s.yaw
        n = np.linalg.norm(acc)
        if n > max_acc:
            acc *= max_acc / n
        vel = s.vel + acc * dt
        n = np.linalg.norm(vel)
        if n > max_vel:
            vel *= max_vel / n
        pos = s.pos + 0.5 * (s.vel + vel) * dt
        dyaw = np.arctan2(np.sin(yaw_ref - s.yaw), np.cos(yaw_ref - s.yaw))
        yaw = s.yaw + float(np.clip(dyaw, -max_yaw_rate * dt, max_yaw_rate * dt))
        collided = s.collided or (self.world is not None and
                                  float(self.world.distance(pos[None])[0]) < self.radius)
        self.state = VehicleState(t=t_new, pos=pos, vel=vel, acc=(vel - s.vel) / dt, yaw=yaw, collided=collided)
        return self.state

    @property
    def pose(self) -> np.ndarray:
        """T_world_body (4x4); roll/pitch follow the horizontal acceleration when ``tilt``."""
        s = self.state
        R = yaw_to_rot(s.yaw)
        if self.tilt:
            thrust = s.acc + np.array([0.0, 0.0, GRAVITY])
            z = thrust / np.linalg.norm(thrust)
            x_c = R[:, 0]
            y = np.cross(z, x_c)
            y /= np.linalg.norm(y)
            R = np.column_stack([np.cross(y, z), y, z])
        return make_pose(R, s.pos)
