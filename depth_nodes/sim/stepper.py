"""One simulated flight step by step: vehicle, odometry and the sensor schedule.

Shared by the bag recorder (:func:`depth_nodes.sim.bag.record_bag`) and the live
simulator node, so both produce the same samples for the same seed. Time is an
integer step counter ``k`` at the odometry rate; sample ``k`` is stamped
``t0_ns + round(k / odom_rate_hz * 1e9)`` nanoseconds. The vehicle's own clock
(``Vehicle.state.t``, :class:`~depth_nodes.trajectory.Trajectory` stamps) counts
seconds from ``t0_ns``; :meth:`SimStepper.follow` takes absolute-time
trajectories and re-bases them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from depth_nodes.sim.odometry import OdometryNoise, OdometrySimulator
from depth_nodes.sim.rig import SensorRig
from depth_nodes.sim.suite import SensorFrame, SensorSuite
from depth_nodes.sim.vehicle import Vehicle
from depth_nodes.sim.world import World
from depth_nodes.trajectory import Trajectory

#: Simulated clock origin (fixed so recordings are reproducible), nanoseconds.
T0_NS = 1_700_000_000 * 10**9


@dataclass
class SimSample:
    """Everything measured at step ``k`` (sim time ``t_ns``).

    Poses are 4x4 ``T_map_base_link``; velocities are in the body frame (m/s,
    rad/s). ``frame`` holds the rendered sensors when a camera and/or radar
    sample is due (``camera`` / ``radar`` say which), else None.
    """

    k: int
    t_ns: int
    T_world_body: np.ndarray
    v_body: np.ndarray
    w_body: np.ndarray
    T_odom: np.ndarray
    v_odom: np.ndarray
    camera: bool
    radar: bool
    frame: SensorFrame | None


class SimStepper:
    """Steps ``vehicle`` at ``rig.odom_rate_hz`` and renders sensors at their rates.

    Args:
        world, vehicle, rig: the simulation (the vehicle must fly in ``world``).
        seed: seeds the odometry noise (``[seed, 3]``) and sensor noise (``[seed, 4]``).
        stereo, radar: render the right stereo image / radar scans at all.
        odom_noise: odometry noise model (None: ground truth).
        t0_ns: absolute time of step 0, nanoseconds.
    """

    def __init__(self, world: World, vehicle: Vehicle, rig: SensorRig | None = None, *, seed: int = 0,
                 stereo: bool = True, radar: bool = True, odom_noise: OdometryNoise | None = None,
                 t0_ns: int = T0_NS):
        self.world, self.vehicle = world, vehicle
        self.rig = rig or SensorRig()
        self.suite = SensorSuite(world, self.rig)
        self.odom = OdometrySimulator(odom_noise, np.random.default_rng([seed, 3]))
        self.rng = np.random.default_rng([seed, 4])
        self.stereo, self.radar = bool(stereo), bool(radar)
        self.t0_ns = int(t0_ns)
        self.dt = 1.0 / self.rig.odom_rate_hz
        self.cam_every = max(1, int(round(self.rig.odom_rate_hz / self.rig.camera_rate_hz)))
        self.radar_every = max(1, int(round(self.rig.odom_rate_hz / self.rig.radar_rate_hz)))
        self.k = 0
        self._prev_yaw = vehicle.state.yaw

    def time_ns(self, k: int | None = None) -> int:
        """Absolute sim time of step ``k`` (default: the current step), nanoseconds."""
        return self.t0_ns + int(round((self.k if k is None else k) * self.dt * 1e9))

    def follow(self, trajectory: Trajectory) -> None:
        """Track ``trajectory`` whose ``stamp`` is absolute sim time in seconds."""
        rebased = dataclasses.replace(trajectory, stamp=trajectory.stamp - self.t0_ns * 1e-9)
        self.vehicle.follow(rebased)

    def sample(self) -> SimSample:
        """Measure the current state (renders the sensors that are due at this step)."""
        k, s = self.k, self.vehicle.state
        T_wb = self.vehicle.pose
        v_body = T_wb[:3, :3].T @ s.vel
        w_body = np.array([0.0, 0.0, (s.yaw - self._prev_yaw) / self.dt]) if k else np.zeros(3)
        self._prev_yaw = s.yaw
        T_est, v_est = self.odom(T_wb, s.vel)
        want_cam, want_radar = k % self.cam_every == 0, self.radar and k % self.radar_every == 0
        frame = None
        if want_cam or want_radar:
            frame = self.suite.render(T_wb, s.vel, self.rng, stereo=want_cam and self.stereo, radar=want_radar)
        return SimSample(k=k, t_ns=self.time_ns(k), T_world_body=T_wb, v_body=v_body, w_body=w_body,
                         T_odom=T_est, v_odom=v_est, camera=want_cam, radar=want_radar, frame=frame)

    def advance(self) -> None:
        """Move the vehicle one odometry period forward."""
        self.vehicle.step(self.dt)
        self.k += 1

    def status(self, goal, goal_tolerance_m: float) -> dict:
        """JSON-safe episode status: sim time (s since t0), position, collision, arrival, distance to goal (m)."""
        s = self.vehicle.state
        dist = float(np.linalg.norm(np.asarray(goal, dtype=np.float64).reshape(3) - s.pos))
        return {"t": self.k * self.dt, "pos": [float(v) for v in s.pos], "collided": bool(s.collided),
                "reached_goal": bool(dist <= goal_tolerance_m and not s.collided),
                "distance_to_goal": dist}
