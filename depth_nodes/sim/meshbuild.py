"""Small numpy mesh builders for procedural worlds.

All geometry is in the world frame (``map``, z up, metres). A :class:`MeshBuilder`
accumulates triangles together with one :class:`Material` id per triangle.
"""
from __future__ import annotations

import numpy as np

from depth_nodes.sim.materials import Material


def _orthonormal_frame(axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors perpendicular to ``axis`` (and to each other)."""
    a = axis / np.linalg.norm(axis)
    helper = np.array([1.0, 0.0, 0.0]) if abs(a[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = np.cross(a, helper)
    u /= np.linalg.norm(u)
    return u, np.cross(a, u)


def _unit_sphere(subdiv: int) -> tuple[np.ndarray, np.ndarray]:
    """Icosphere vertices (unit radius) and triangles, outward winding."""
    t = (1.0 + 5 ** 0.5) / 2.0
    v = np.array([[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t],
                  [0, -1, -t], [0, 1, -t], [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]], float)
    f = np.array([[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4],
                  [11, 10, 2], [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8],
                  [3, 8, 9], [4, 9, 5], [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]])
    verts = list(v / np.linalg.norm(v, axis=1, keepdims=True))
    for _ in range(subdiv):
        cache: dict[tuple[int, int], int] = {}

        def mid(i: int, j: int) -> int:
            key = (min(i, j), max(i, j))
            if key not in cache:
                m = verts[i] + verts[j]
                verts.append(m / np.linalg.norm(m))
                cache[key] = len(verts) - 1
            return cache[key]

        nf = []
        for a, b, c in f:
            ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
            nf += [[a, ab, ca], [b, bc, ab], [c, ca, bc], [ab, bc, ca]]
        f = np.array(nf)
    return np.array(verts), np.asarray(f)


_SPHERES = {s: _unit_sphere(s) for s in (0, 1)}


class MeshBuilder:
    """Accumulates triangles and per-triangle material ids."""

    def __init__(self) -> None:
        self._verts: list[np.ndarray] = []
        self._tris: list[np.ndarray] = []
        self._mats: list[np.ndarray] = []
        self._n = 0

    @property
    def n_triangles(self) -> int:
        """Triangles added so far."""
        return sum(len(t) for t in self._tris)

    def add(self, vertices: np.ndarray, triangles: np.ndarray, material: Material) -> None:
        """Append a raw triangle soup (indices local to ``vertices``)."""
        vertices = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
        triangles = np.asarray(triangles, dtype=np.int64).reshape(-1, 3)
        self._verts.append(vertices)
        self._tris.append(triangles + self._n)
        self._mats.append(np.full(len(triangles), int(material), dtype=np.uint8))
        self._n += len(vertices)

    def frustum(self, p0, p1, r0: float, r1: float, material: Material, segments: int = 12,
                cap: bool = True, max_len: float = 1.0) -> None:
        """Tapered cylinder (cone frustum) from ``p0`` (radius ``r0``) to ``p1`` (radius ``r1``).

        The side is split into rings at most ``max_len`` apart: long thin triangles have
        huge bounding boxes and make ray casting several times slower.
        """
        p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
        u, w = _orthonormal_frame(p1 - p0)
        ang = np.linspace(0.0, 2 * np.pi, segments, endpoint=False)
        ring = np.cos(ang)[:, None] * u + np.sin(ang)[:, None] * w
        n_rings = max(1, int(np.ceil(np.linalg.norm(p1 - p0) / max_len)))
        a = np.linspace(0.0, 1.0, n_rings + 1)[:, None, None]
        rings = (p0 + a * (p1 - p0)) + ((1 - a) * r0 + a * r1) * ring        # (n_rings + 1, S, 3)
        verts = np.vstack([rings.reshape(-1, 3), p0, p1])
        i = np.arange(segments)
        j = (i + 1) % segments
        k = (np.arange(n_rings) * segments)[:, None]
        tris = [np.stack([k + i, k + j, k + segments + j], -1).reshape(-1, 3),
                np.stack([k + i, k + segments + j, k + segments + i], -1).reshape(-1, 3)]
        if cap:
            c0, c1 = len(verts) - 2, len(verts) - 1
            top = n_rings * segments
            tris.append(np.stack([np.full(segments, c0), j, i], 1))
            tris.append(np.stack([np.full(segments, c1), top + i, top + j], 1))
        self.add(verts, np.vstack(tris), material)

    def box(self, center, size, material: Material, yaw: float = 0.0) -> None:
        """Box with edge lengths ``size`` (sx, sy, sz) rotated by ``yaw`` about +z."""
        c = np.asarray(center, float)
        s = np.asarray(size, float) / 2.0
        corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float) * s
        cy, sy = np.cos(yaw), np.sin(yaw)
        R = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
        tris = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                         [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
        self.add(corners @ R.T + c, tris, material)

    def ellipsoid(self, center, radii, material: Material, subdiv: int = 1, rng=None,
                  roughness: float = 0.0) -> None:
        """Ellipsoid with semi-axes ``radii``; ``roughness`` jitters vertex radii (blobby foliage)."""
        v, f = _SPHERES[subdiv]
        scale = np.asarray(radii, float)
        if roughness > 0 and rng is not None:
            v = v * (1.0 + roughness * rng.uniform(-1, 1, size=(len(v), 1)))
        self.add(v * scale + np.asarray(center, float), f, material)

    def heightfield(self, xs: np.ndarray, ys: np.ndarray, z: np.ndarray, material: Material) -> None:
        """Grid surface with heights ``z[len(ys), len(xs)]`` (upward-facing)."""
        X, Y = np.meshgrid(xs, ys)
        verts = np.stack([X.ravel(), Y.ravel(), np.asarray(z, float).ravel()], 1)
        nx = len(xs)
        r, c = np.meshgrid(np.arange(len(ys) - 1), np.arange(nx - 1), indexing="ij")
        a = (r * nx + c).ravel()
        b, d, e = a + 1, a + nx, a + nx + 1
        tris = np.vstack([np.stack([a, b, e], 1), np.stack([a, e, d], 1)])
        self.add(verts, tris, material)

    def quad(self, corners, material: Material) -> None:
        """Two-triangle planar quad from four corners in order."""
        self.add(np.asarray(corners, float), np.array([[0, 1, 2], [0, 2, 3]]), material)

    def build(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(vertices (V,3) float32, triangles (T,3) uint32, materials (T,) uint8)."""
        if not self._verts:
            raise ValueError("mesh builder is empty: add geometry before build()")
        return (np.vstack(self._verts).astype(np.float32), np.vstack(self._tris).astype(np.uint32),
                np.concatenate(self._mats))
