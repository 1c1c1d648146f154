"""Distance fields the planner checks trajectories against.

Any object with ``query(points (N, 3)) -> (distance (N,) float32, known (N,) bool)``
is a :class:`DistanceField`: the TSDF map (``sdf`` clipped to +-truncation) and
its ESDF window both satisfy it. Points are world-frame metres.

Semantics the planner relies on:

* ``distance`` is a lower bound (metres) on the distance from the point to the
  nearest obstacle the field knows of, negative inside obstacles. It is used
  wherever it is finite, also at points whose own voxel is unobserved; a field
  with no information about a point returns NaN (or +inf) there.
* ``known`` says whether the point itself was observed (free or occupied).
* A field whose distances saturate (a TSDF) exposes ``max_distance``; the
  planner refuses to use it with a required clearance above that value.

This module also holds three implementations: :class:`GridDistanceField`
(dense array, nearest-voxel lookup; the fast one), :class:`VoxelDistanceField`
(occupancy voxels -> Euclidean distance transform) and
:class:`AnalyticDistanceField` (spheres, capped vertical cylinders, ground).
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
from scipy import ndimage

from depth_nodes.camera import PinholeCamera
from depth_nodes.geometry import check_pose
from depth_nodes.geometry import finite_scalar, finite_vector

#: Largest dense grid we allocate (voxels), guards against absurd shapes.
MAX_GRID_VOXELS = 256 ** 3


@runtime_checkable
class DistanceField(Protocol):
    def query(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3) world points -> (distance (N,) float32 metres, known (N,) bool)."""
        ...


def as_points(points, name: str = "points") -> np.ndarray:
    """``points`` as an (N, 3) float64 array or ValueError."""
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"{name} must have shape (N, 3), got {p.shape}")
    return p


class GridDistanceField:
    """Dense distance grid with nearest-voxel lookup.

    ``distance[i, j, k]`` (float32 metres) is the value for the voxel whose
    minimum corner is ``origin + voxel_size * (i, j, k)``; ``known`` (same
    shape, bool; default all True) marks observed voxels. Points outside the
    grid return ``NaN`` distance and ``known=False``.
    """

    def __init__(self, distance, origin, voxel_size: float, known=None,
                 max_distance: float = float("inf")):
        d = np.asarray(distance, dtype=np.float32)
        if d.ndim != 3 or min(d.shape) < 1:
            raise ValueError(f"distance grid must be a non-empty 3D array, got shape {d.shape}")
        if d.size > MAX_GRID_VOXELS:
            raise ValueError(f"distance grid has {d.size} voxels, more than {MAX_GRID_VOXELS}")
        if np.isnan(d).any():
            raise ValueError("distance grid contains NaN; use known=False for unobserved voxels")
        self.voxel_size = finite_scalar(voxel_size, "voxel_size")
        if self.voxel_size <= 0:
            raise ValueError(f"voxel_size must be > 0, got {self.voxel_size}")
        self.origin = finite_vector(origin, 3, "origin")
        if known is None:
            k = np.ones(d.shape, dtype=bool)
        else:
            k = np.asarray(known, dtype=bool)
            if k.shape != d.shape:
                raise ValueError(f"known shape {k.shape} does not match distance shape {d.shape}")
        self.shape = d.shape
        self.max_distance = float(max_distance)
        self._dist = np.ascontiguousarray(d).ravel()
        self._known = np.ascontiguousarray(k).ravel()
        self._strides = (d.shape[1] * d.shape[2], d.shape[2], 1)

    @property
    def distance(self) -> np.ndarray:
        return self._dist.reshape(self.shape)

    @property
    def known(self) -> np.ndarray:
        return self._known.reshape(self.shape)

    def voxel_centres(self, index) -> np.ndarray:
        """World coordinates of voxel centres for (N, 3) integer indices."""
        return self.origin + (np.asarray(index, dtype=np.float64) + 0.5) * self.voxel_size

    def query(self, points) -> tuple[np.ndarray, np.ndarray]:
        p = as_points(points)
        with np.errstate(invalid="ignore"):
            f = np.floor((p - self.origin) * (1.0 / self.voxel_size))
        # per-column tests and arithmetic: numpy's reductions over a length-3 axis are slow
        fx, fy, fz = f[:, 0], f[:, 1], f[:, 2]
        inside = ((fx >= 0) & (fx < self.shape[0]) & (fy >= 0) & (fy < self.shape[1])
                  & (fz >= 0) & (fz < self.shape[2]))  # NaN compares False
        flat = np.where(inside, fx * self._strides[0] + fy * self._strides[1] + fz, 0).astype(np.int64)
        dist = np.where(inside, self._dist[flat], np.float32(np.nan))
        return dist, inside & self._known[flat]


class VoxelDistanceField(GridDistanceField):
    """Occupancy voxels -> Euclidean distance transform (scipy.ndimage).

    ``occupied`` and ``known`` are (X, Y, Z) bool grids; occupied voxels count
    as known. The stored distance at a voxel is the distance from its centre to
    the nearest occupied voxel centre minus half a voxel diagonal, so a
    nearest-voxel lookup is a lower bound on the distance from the query point
    itself to every occupied voxel centre. Without occupied voxels every
    distance is +inf.
    """

    def __init__(self, occupied, origin, voxel_size: float, known=None):
        occ = np.asarray(occupied, dtype=bool)
        if occ.ndim != 3 or min(occ.shape) < 1:
            raise ValueError(f"occupied must be a non-empty 3D array, got shape {occ.shape}")
        if occ.size > MAX_GRID_VOXELS:
            raise ValueError(f"occupied grid has {occ.size} voxels, more than {MAX_GRID_VOXELS}")
        vs = finite_scalar(voxel_size, "voxel_size")
        if vs <= 0:
            raise ValueError(f"voxel_size must be > 0, got {vs}")
        if occ.any():
            edt = ndimage.distance_transform_edt(~occ, sampling=vs).astype(np.float32)
            dist = edt - np.float32(0.5 * np.sqrt(3.0) * vs)
        else:
            dist = np.full(occ.shape, np.inf, dtype=np.float32)
        kn = None if known is None else (np.asarray(known, dtype=bool) | occ)
        super().__init__(dist, origin, vs, known=kn)
        self.occupied = occ


class AnalyticDistanceField:
    """Exact signed distance to spheres, capped vertical cylinders and an optional ground plane.

    ``spheres`` (K, 4) rows ``x, y, z, radius``; ``cylinders`` (M, 5) rows
    ``x, y, radius, z_min, z_max``; ``ground`` adds the half-space z < 0.
    ``known_box`` ((3,), (3,)) min/max corners of the observed region
    (default: everything is known).
    """

    def __init__(self, spheres=(), cylinders=(), ground: bool = False, known_box=None):
        self.spheres = np.asarray(spheres, dtype=np.float64).reshape(-1, 4)
        self.cylinders = np.asarray(cylinders, dtype=np.float64).reshape(-1, 5)
        for name, a in (("spheres", self.spheres), ("cylinders", self.cylinders)):
            if not np.all(np.isfinite(a)):
                raise ValueError(f"{name} must be finite")
        if np.any(self.spheres[:, 3] <= 0) or np.any(self.cylinders[:, 2] <= 0):
            raise ValueError("sphere and cylinder radii must be > 0")
        if np.any(self.cylinders[:, 4] <= self.cylinders[:, 3]):
            raise ValueError("cylinders need z_max > z_min")
        self.ground = bool(ground)
        self.known_box = None
        if known_box is not None:
            lo, hi = (finite_vector(b, 3, "known_box corner") for b in known_box)
            self.known_box = (lo, hi)

    def signed_distance(self, points) -> np.ndarray:
        """(N,) float64 signed distance (negative inside); +inf with no obstacles."""
        p = as_points(points)
        chunk = 32768  # bounds the (N, K) temporaries
        if p.shape[0] > chunk:
            return np.concatenate([self.signed_distance(p[i:i + chunk]) for i in range(0, p.shape[0], chunk)])
        d = np.full(p.shape[0], np.inf)
        if len(self.spheres):
            ds = np.linalg.norm(p[:, None, :] - self.spheres[None, :, :3], axis=2) - self.spheres[None, :, 3]
            d = np.minimum(d, ds.min(axis=1))
        if len(self.cylinders):
            c = self.cylinders
            radial = np.hypot(p[:, None, 0] - c[None, :, 0], p[:, None, 1] - c[None, :, 1]) - c[None, :, 2]
            half = 0.5 * (c[:, 4] - c[:, 3])
            axial = np.abs(p[:, None, 2] - 0.5 * (c[None, :, 3] + c[None, :, 4])) - half[None, :]
            outside = np.hypot(np.maximum(radial, 0.0), np.maximum(axial, 0.0))
            dc = outside + np.minimum(np.maximum(radial, axial), 0.0)
            d = np.minimum(d, dc.min(axis=1))
        if self.ground:
            d = np.minimum(d, p[:, 2])
        return d

    def query(self, points) -> tuple[np.ndarray, np.ndarray]:
        p = as_points(points)
        d = self.signed_distance(p).astype(np.float32)
        if self.known_box is None:
            return d, np.ones(p.shape[0], dtype=bool)
        lo, hi = self.known_box
        return d, np.all((p >= lo) & (p <= hi), axis=1)

    def to_grid(self, origin, shape, voxel_size: float) -> GridDistanceField:
        """Sample into a :class:`GridDistanceField`; values are lowered by half a voxel
        diagonal so nearest-voxel lookups stay lower bounds (distance is 1-Lipschitz)."""
        shape = tuple(int(s) for s in shape)
        if len(shape) != 3 or min(shape) < 1 or int(np.prod(shape)) > MAX_GRID_VOXELS:
            raise ValueError(f"grid shape must be 3 positive sizes with <= {MAX_GRID_VOXELS} voxels, got {shape}")
        origin = finite_vector(origin, 3, "origin")
        idx = np.stack(np.meshgrid(*(np.arange(s) for s in shape), indexing="ij"), axis=-1).reshape(-1, 3)
        centres = origin + (idx + 0.5) * voxel_size
        d, known = self.query(centres)
        d = d - np.float32(0.5 * np.sqrt(3.0) * voxel_size)
        return GridDistanceField(d.reshape(shape), origin, voxel_size, known=known.reshape(shape))

    def render_depth(self, camera: PinholeCamera, T_world_cam, max_range: float = 20.0,
                     iterations: int = 128) -> np.ndarray:
        """Depth image (H, W) float32 of these obstacles by sphere tracing; NaN = no hit."""
        T = check_pose(T_world_cam, "T_world_cam")
        rays = camera.rays(np.float64).reshape(-1, 3)
        norm = np.linalg.norm(rays, axis=1)
        dirs = (rays / norm[:, None]) @ T[:3, :3].T
        origin = T[:3, 3]
        t = np.zeros(dirs.shape[0])
        hit = np.zeros(dirs.shape[0], dtype=bool)
        active = np.arange(dirs.shape[0])
        for _ in range(int(iterations)):
            if active.size == 0:
                break
            d = self.signed_distance(origin + t[active, None] * dirs[active])
            done = d < 1e-3
            hit[active[done]] = True
            t[active] += np.maximum(d, 0.0)
            active = active[~done & (t[active] < max_range)]
        depth = np.where(hit & (t < max_range), t / norm, np.nan).astype(np.float32)
        return depth.reshape(camera.height, camera.width)
