"""Scripted collision-free route for recording without a planner.

Searches a 2D grid at flight height (``world.distance`` sampled at ``FLIGHT_HEIGHT_M``
above the terrain) for a minimum-cost path from start to goal, shortcuts it by
line of sight, rounds the corners, and times it at a constant cruise speed
with smooth acceleration at both ends.
"""
from __future__ import annotations

import numpy as np
from skimage.graph import route_through_array

from depth_nodes.sim.world import FLIGHT_HEIGHT_M, World
from depth_nodes.trajectory import Trajectory


def _lift(world: World, xy: np.ndarray, height: float) -> np.ndarray:
    return np.column_stack([xy, world.ground_z(xy[:, 0], xy[:, 1]) + height])


def _clear(world: World, a: np.ndarray, b: np.ndarray, clearance: float, height: float) -> bool:
    n = max(2, int(np.ceil(np.linalg.norm(b - a) / 0.1)) + 1)
    xy = a[None, :] + np.linspace(0, 1, n)[:, None] * (b - a)[None, :]
    return bool(np.all(world.distance(_lift(world, xy, height)) >= clearance))


def plan_route(world: World, clearance: float = 0.7, resolution: float = 0.25,
               height: float = FLIGHT_HEIGHT_M, min_clearance: float = 0.4) -> np.ndarray:
    """(K, 3) waypoints from ``world.start`` to ``world.goal`` keeping ``clearance`` metres.

    If no route keeps ``clearance``, retries with smaller clearances down to
    ``min_clearance``; raises ValueError if even that fails.
    """
    if not (0.0 < resolution <= 2.0 and 0.0 <= min_clearance <= clearance):
        raise ValueError(f"need 0 < resolution <= 2 and 0 <= min_clearance <= clearance, got "
                         f"{resolution}, {min_clearance}, {clearance}")
    c = clearance
    while True:
        try:
            return _plan(world, c, resolution, height)
        except ValueError:
            if c <= min_clearance:
                raise
            c = max(min_clearance, c - 0.15)


def _plan(world: World, clearance: float, resolution: float, height: float) -> np.ndarray:
    lo, hi = world.bounds[0, :2], world.bounds[1, :2]
    s, g = world.start[:2], world.goal[:2]
    lo = np.minimum(lo, np.minimum(s, g) - 2.0)
    hi = np.maximum(hi, np.maximum(s, g) + 2.0)
    xs = np.arange(lo[0], hi[0] + resolution, resolution)
    ys = np.arange(lo[1], hi[1] + resolution, resolution)
    X, Y = np.meshgrid(xs, ys, indexing="ij")
    d = world.distance(_lift(world, np.column_stack([X.ravel(), Y.ravel()]), height)).reshape(X.shape)
    cost = np.where(d >= clearance, 1.0 + 2.0 / (1.0 + np.maximum(d - clearance, 0.0) * 2.0), 1e6)
    si = tuple(np.round((s - lo) / resolution).astype(int))
    gi = tuple(np.round((g - lo) / resolution).astype(int))
    path, total = route_through_array(cost, si, gi, fully_connected=True, geometric=True)
    path = np.asarray(path)
    if total >= 1e6 or np.any(d[path[:, 0], path[:, 1]] < clearance):
        raise ValueError(f"no route from start to goal with clearance {clearance} m in world {world.spec}")
    pts = np.column_stack([xs[path[:, 0]], ys[path[:, 1]]])
    pts[0], pts[-1] = s, g
    # line-of-sight shortcuts
    keep = [0]
    i = 0
    while i < len(pts) - 1:
        j = len(pts) - 1
        while j > i + 1 and not _clear(world, pts[i], pts[j], clearance, height):
            j = max(i + 1, (i + j) // 2) if j - i > 8 else j - 1
        keep.append(j)
        i = j
    poly = pts[keep]
    # Chaikin corner rounding, kept only if still clear
    for _ in range(3):
        if len(poly) < 3:
            break
        q = 0.75 * poly[:-1] + 0.25 * poly[1:]
        r = 0.25 * poly[:-1] + 0.75 * poly[1:]
        cand = np.vstack([poly[:1], np.stack([q, r], 1).reshape(-1, 2)[1:-1], poly[-1:]])
        if all(_clear(world, a, b, clearance * 0.9, height) for a, b in zip(cand[:-1], cand[1:])):
            poly = cand
        else:
            break
    return _lift(world, poly, height)


def route_trajectory(waypoints: np.ndarray, speed: float = 2.0, accel: float = 1.0, dt: float = 0.05,
                     stamp: float = 0.0) -> Trajectory:
    """Time a polyline at cruise ``speed`` (m/s) with a trapezoidal speed profile; yaw follows the path."""
    w = np.asarray(waypoints, dtype=np.float64)
    if w.ndim != 2 or w.shape[1] != 3 or len(w) < 2 or not np.all(np.isfinite(w)):
        raise ValueError(f"waypoints must be finite (K>=2, 3), got shape {w.shape}")
    if not (speed > 0 and accel > 0 and dt > 0):
        raise ValueError(f"speed, accel and dt must be > 0, got {speed}, {accel}, {dt}")
    seg = np.linalg.norm(np.diff(w, axis=0), axis=1)
    w = w[np.concatenate([[True], seg > 1e-6])]
    s_knots = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(w, axis=0), axis=1))])
    length = s_knots[-1]
    if length <= 0:
        raise ValueError("waypoints span zero length")
    v = min(speed, np.sqrt(accel * length))
    t_acc = v / accel
    t_total = 2 * t_acc + (length - v * t_acc) / v
    t = np.arange(0.0, t_total + dt, dt)
    t[-1] = max(t[-1], t_total)
    s = np.where(t < t_acc, 0.5 * accel * t ** 2,
                 np.where(t < t_total - t_acc, 0.5 * v * t_acc + v * (t - t_acc),
                          length - 0.5 * accel * np.maximum(t_total - t, 0) ** 2))
    s = np.clip(s, 0, length)
    pos = np.column_stack([np.interp(s, s_knots, w[:, k]) for k in range(3)])
    vel = np.gradient(pos, t, axis=0)
    vel[0] = vel[-1] = 0.0
    acc = np.gradient(vel, t, axis=0)
    acc[-1] = 0.0  # hover at the goal: no feed-forward left over from braking
    ahead = np.column_stack([np.interp(np.minimum(s + 1.0, length), s_knots, w[:, k]) for k in range(2)])
    dxy = ahead - pos[:, :2]
    dxy[np.linalg.norm(dxy, axis=1) < 1e-6] = (w[-1, :2] - w[-2, :2])
    yaw = np.unwrap(np.arctan2(dxy[:, 1], dxy[:, 0]))
    return Trajectory(t=t, pos=pos, vel=vel, acc=acc, yaw=yaw, stamp=stamp)
