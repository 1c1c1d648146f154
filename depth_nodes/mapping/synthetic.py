"""Analytic test scenes (infinite planes and axis-aligned boxes) for the mapping layer.

Used by the TSDF benchmark and the mapping tests: it renders exact z-depth
images and answers exact distance queries, without depending on the
simulator. World frame ``map`` (z up); depth images are float32 metres, NaN
where a ray hits nothing within ``max_range``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from depth_nodes.camera import PinholeCamera
from depth_nodes.geometry import check_pose, transform_points


@dataclass(frozen=True)
class Plane:
    """Infinite plane through ``point`` with unit ``normal`` (the free side is +normal)."""

    point: tuple[float, float, float]
    normal: tuple[float, float, float]


@dataclass(frozen=True)
class Box:
    """Solid axis-aligned box between ``lo`` and ``hi`` (world metres)."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]


@dataclass
class Scene:
    """A set of planes and boxes; everything else is free space."""

    planes: list[Plane] = field(default_factory=list)
    boxes: list[Box] = field(default_factory=list)

    def signed_distance(self, points) -> np.ndarray:
        """(N,) Euclidean signed distance in metres: > 0 in free space, < 0 inside solids.

        Planes are half-spaces (solid on the -normal side).
        """
        p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        d = np.full(len(p), np.inf)
        for pl in self.planes:
            n = np.asarray(pl.normal, dtype=np.float64)
            n = n / np.linalg.norm(n)
            d = np.minimum(d, (p - np.asarray(pl.point)) @ n)
        for b in self.boxes:
            lo, hi = np.asarray(b.lo, dtype=np.float64), np.asarray(b.hi, dtype=np.float64)
            c, h = (lo + hi) / 2, (hi - lo) / 2
            q = np.abs(p - c) - h
            outside = np.linalg.norm(np.maximum(q, 0.0), axis=1)
            inside = np.minimum(q.max(axis=1), 0.0)
            d = np.minimum(d, outside + inside)
        return d

    def render_depth(self, camera: PinholeCamera, T_world_cam, max_range: float = 30.0) -> np.ndarray:
        """Exact z-depth image (H, W) float32 metres seen from optical pose ``T_world_cam``."""
        T = check_pose(T_world_cam, "T_world_cam")
        rays_cam = camera.rays(np.float64).reshape(-1, 3)  # z = 1, so ray parameter = z-depth
        dirs = rays_cam @ T[:3, :3].T
        origin = T[:3, 3]
        t_hit = np.full(len(dirs), np.inf)
        for pl in self.planes:
            n = np.asarray(pl.normal, dtype=np.float64)
            denom = dirs @ n
            with np.errstate(divide="ignore", invalid="ignore"):
                t = ((np.asarray(pl.point) - origin) @ n) / denom
            t_hit = np.where((t > 0) & np.isfinite(t), np.minimum(t_hit, t), t_hit)
        for b in self.boxes:
            with np.errstate(divide="ignore", invalid="ignore"):
                inv = 1.0 / dirs
                t0 = (np.asarray(b.lo) - origin) * inv
                t1 = (np.asarray(b.hi) - origin) * inv
            t_near = np.nanmax(np.minimum(t0, t1), axis=1)
            t_far = np.nanmin(np.maximum(t0, t1), axis=1)
            hit = (t_near <= t_far) & (t_far > 0)
            t = np.where(t_near > 0, t_near, t_far)
            t_hit = np.where(hit, np.minimum(t_hit, t), t_hit)
        depth = t_hit.reshape(camera.height, camera.width)
        ranges = depth * np.linalg.norm(camera.rays(np.float64), axis=2)
        depth[~np.isfinite(depth) | (ranges > max_range)] = np.nan
        return depth.astype(np.float32)

    def sample_surface(self, camera: PinholeCamera, T_world_cam, max_range: float = 30.0) -> np.ndarray:
        """World points (N, 3) of the surfaces visible from ``T_world_cam``."""
        depth = self.render_depth(camera, T_world_cam, max_range)
        return transform_points(check_pose(T_world_cam), camera.unproject(depth).astype(np.float64))


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Optical-frame pose ``T_world_cam`` at ``eye`` looking at ``target`` (z fwd, y down)."""
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    z = target - eye
    if np.linalg.norm(z) < 1e-9:
        raise ValueError(f"look_at: eye {eye} and target {target} coincide")
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:
        raise ValueError("look_at: viewing direction is parallel to up")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    T = np.eye(4)
    T[:3, :3] = np.stack([x, y, z], axis=1)
    T[:3, 3] = eye
    return T


def demo_scene() -> Scene:
    """Ground plane, a wall and a few boxes: the benchmark and test scene."""
    return Scene(
        planes=[Plane((0.0, 0.0, 0.0), (0.0, 0.0, 1.0)), Plane((12.0, 0.0, 0.0), (-1.0, 0.0, 0.0))],
        boxes=[
            Box((3.0, -1.0, 0.0), (4.0, 0.0, 2.0)),
            Box((5.0, 1.5, 0.0), (5.6, 2.1, 3.0)),
            Box((7.0, -3.0, 0.0), (8.0, -2.0, 1.5)),
        ],
    )

