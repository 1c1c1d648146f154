"""Core :class:`~depth_nodes.trajectory.Trajectory` <-> trajectory_msgs/MultiDOFJointTrajectory.

One joint (``base_link`` by default) whose transform per sample is the body
position in the world frame (header frame, ``map``) and a yaw-only rotation;
``velocities`` / ``accelerations`` carry the linear velocity (m/s) and
acceleration (m/s^2) in the world frame (angular parts: yaw rate about +z, 0).
The header stamp is the absolute time of sample 0 (``Trajectory.stamp``) and
``time_from_start`` the sample time relative to it.
"""
from __future__ import annotations

import math

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Quaternion, Transform, Twist, Vector3
from nav_msgs.msg import Path
from trajectory_msgs.msg import MultiDOFJointTrajectory, MultiDOFJointTrajectoryPoint

from depth_nodes.codec import stamp_to_sec
from depth_nodes.geometry import pose_from_xyz_yaw
from depth_nodes.ros.conversions import make_header, pose_to_pose_stamped_msg
from depth_nodes.trajectory import Trajectory

__all__ = ["MAX_TRAJECTORY_POINTS", "restamp", "trajectory_msg_to_trajectory", "trajectory_to_msg",
           "trajectory_to_path_msg"]

#: Largest accepted number of samples in a received trajectory.
MAX_TRAJECTORY_POINTS = 100_000

_NS = 1_000_000_000


def _duration(seconds: float) -> Duration:
    ns = int(round(seconds * _NS))
    return Duration(sec=ns // _NS, nanosec=ns % _NS)


def restamp(traj: Trajectory, stamp: float) -> Trajectory:
    """The same motion with sample 0 at absolute time ``stamp`` (seconds).

    A later ``stamp`` drops the samples already in the past and starts with the
    state interpolated at ``stamp`` (past the end: the last sample); an earlier
    one holds the first sample from ``stamp`` until ``traj.stamp``.
    """
    offset = float(stamp) - traj.stamp
    if not math.isfinite(offset):
        raise ValueError(f"stamp must be finite, got {stamp!r}")
    if offset == 0.0:
        return traj
    if offset < 0.0:
        keep = np.arange(traj.t.size)
        first = (traj.pos[0], traj.vel[0], traj.acc[0], float(traj.yaw[0]))
    else:
        keep = np.flatnonzero(traj.t > offset + 1e-9)
        first = traj.sample(offset)
    return Trajectory(t=np.concatenate([[0.0], traj.t[keep] - offset]), pos=np.vstack([first[0], traj.pos[keep]]),
                      vel=np.vstack([first[1], traj.vel[keep]]), acc=np.vstack([first[2], traj.acc[keep]]),
                      yaw=np.concatenate([[first[3]], traj.yaw[keep]]), stamp=float(stamp))


def _yaw_rate(traj: Trajectory) -> np.ndarray:
    """Finite-difference yaw rate (rad/s) per sample (wrapped differences; 0 for one sample)."""
    if traj.t.size < 2:
        return np.zeros(1)
    dyaw = np.arctan2(np.sin(np.diff(traj.yaw)), np.cos(np.diff(traj.yaw))) / np.diff(traj.t)
    return np.append(dyaw, dyaw[-1])


def trajectory_to_msg(traj: Trajectory, *, frame_id: str = "map",
                      joint_name: str = "base_link") -> MultiDOFJointTrajectory:
    """MultiDOFJointTrajectory of ``traj``; header stamp ``traj.stamp`` (see :func:`restamp`)."""
    if not isinstance(traj, Trajectory):
        raise ValueError(f"traj must be a Trajectory, got {type(traj).__name__}")
    msg = MultiDOFJointTrajectory()
    msg.header = make_header(traj.stamp, frame_id)
    msg.joint_names = [joint_name]
    half = 0.5 * traj.yaw
    qz, qw = np.sin(half), np.cos(half)
    rate = _yaw_rate(traj)
    points = []
    for k in range(traj.t.size):
        p, v, a = traj.pos[k], traj.vel[k], traj.acc[k]
        tf = Transform(translation=Vector3(x=float(p[0]), y=float(p[1]), z=float(p[2])),
                       rotation=Quaternion(x=0.0, y=0.0, z=float(qz[k]), w=float(qw[k])))
        vel = Twist(linear=Vector3(x=float(v[0]), y=float(v[1]), z=float(v[2])),
                    angular=Vector3(z=float(rate[k])))
        acc = Twist(linear=Vector3(x=float(a[0]), y=float(a[1]), z=float(a[2])))
        points.append(MultiDOFJointTrajectoryPoint(transforms=[tf], velocities=[vel], accelerations=[acc],
                                                   time_from_start=_duration(traj.t[k])))
    msg.points = points
    return msg


def _xyz(v) -> list[float]:
    return [float(getattr(v, c)) for c in "xyz"]


def trajectory_msg_to_trajectory(msg, *, max_points: int = MAX_TRAJECTORY_POINTS) -> Trajectory:
    """Trajectory from a MultiDOFJointTrajectory (first joint), validated.

    Stamp = header stamp (seconds); ``t`` = ``time_from_start`` re-based so that
    ``t[0] == 0`` (the stamp is shifted by the first offset). Missing velocities
    or accelerations are zero. Raises ValueError naming the field on an empty
    trajectory, too many points, non-increasing times, non-finite values or a
    zero quaternion.
    """
    header = getattr(msg, "header", None)
    points = list(getattr(msg, "points", None) or [])
    if header is None:
        raise ValueError("trajectory message has no header")
    if not points:
        raise ValueError("trajectory message has no points")
    if len(points) > max_points:
        raise ValueError(f"trajectory message has {len(points)} points, more than max_points={max_points}")
    k = len(points)
    t = np.empty(k)
    pos, vel, acc = np.zeros((k, 3)), np.zeros((k, 3)), np.zeros((k, 3))
    yaw = np.empty(k)
    for i, pt in enumerate(points):
        tfs = list(pt.transforms)
        if not tfs:
            raise ValueError(f"trajectory points[{i}].transforms is empty")
        d = pt.time_from_start
        t[i] = float(d.sec) + float(d.nanosec) / _NS
        pos[i] = _xyz(tfs[0].translation)
        q = tfs[0].rotation
        qx, qy, qz, qw = float(q.x), float(q.y), float(q.z), float(q.w)
        n = qx * qx + qy * qy + qz * qz + qw * qw
        if not math.isfinite(n) or n < 1e-12:
            raise ValueError(f"trajectory points[{i}].transforms[0].rotation is not a valid quaternion: "
                             f"({qx}, {qy}, {qz}, {qw})")
        yaw[i] = math.atan2(2.0 * (qw * qz + qx * qy), 1.0 - 2.0 * (qy * qy + qz * qz))
        if len(pt.velocities):
            vel[i] = _xyz(pt.velocities[0].linear)
        if len(pt.accelerations):
            acc[i] = _xyz(pt.accelerations[0].linear)
    if k > 1 and np.any(np.diff(t) <= 0):
        bad = int(np.argmax(np.diff(t) <= 0)) + 1
        raise ValueError(f"trajectory time_from_start must be strictly increasing: "
                         f"points[{bad}] at {t[bad]} s after {t[bad - 1]} s")
    for name, arr in (("positions", pos), ("velocities", vel), ("accelerations", acc)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"trajectory {name} contain non-finite values")
    stamp = stamp_to_sec(header.stamp) + float(t[0])
    return Trajectory(t=t - t[0], pos=pos, vel=vel, acc=acc, yaw=yaw, stamp=stamp)


def trajectory_to_path_msg(traj: Trajectory, *, frame_id: str = "map") -> Path:
    """nav_msgs/Path of the trajectory's poses (each stamped with its absolute sample time)."""
    base = traj.stamp
    poses = [pose_to_pose_stamped_msg(pose_from_xyz_yaw(traj.pos[k], float(traj.yaw[k])),
                                      stamp=base + float(traj.t[k]), frame_id=frame_id)
             for k in range(traj.t.size)]
    return Path(header=make_header(base, frame_id), poses=poses)
