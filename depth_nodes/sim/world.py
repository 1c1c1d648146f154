"""Procedural worlds: a seeded spec, a triangle mesh, and ground-truth ray queries.

Frame: world ``map``, z up, metres; the ground is near z = 0. A :class:`World`
wraps one triangle mesh in an Open3D :class:`open3d.t.geometry.RaycastingScene`
for ray casting and unsigned distance queries. Every triangle carries a
:class:`~depth_nodes.sim.materials.Material` id used for texturing.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import open3d as o3d

from depth_nodes.sim.materials import Material

KINDS = ("forest", "urban", "indoor")

#: Named densities per kind. Forest: trees per 100 m^2. Urban: obstacle groups
#: per 100 m^2. Indoor: furniture/pillars per 100 m^2 of floor.
NAMED_DENSITY = {
    "forest": {"sparse": 2.0, "medium": 6.0, "dense": 15.0},
    "urban": {"sparse": 0.6, "medium": 1.5, "dense": 3.0},
    "indoor": {"sparse": 1.5, "medium": 3.0, "dense": 6.0},
}
#: Default (length along +x, width along y) in metres.
DEFAULT_EXTENT = {"forest": (60.0, 30.0), "urban": (80.0, 40.0), "indoor": (30.0, 14.0)}
#: Upper bound on any extent side (guards against absurd allocations).
MAX_EXTENT_M = 1000.0
#: Height of start/goal above the local ground, metres.
FLIGHT_HEIGHT_M = 1.5


@dataclass(frozen=True)
class WorldSpec:
    """Everything needed to rebuild a world exactly.

    ``density`` accepts a float or one of ``'sparse' | 'medium' | 'dense'``
    (resolved to the kind's number in :data:`NAMED_DENSITY`); ``extent`` is
    (length along +x, width along y) in metres, ``None`` for the kind's default.
    """

    kind: str = "forest"
    seed: int = 0
    density: float | str = "medium"
    extent: tuple[float, float] | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"world kind must be one of {KINDS}, got {self.kind!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"world seed must be a non-negative integer, got {self.seed!r}")
        object.__setattr__(self, "seed", int(self.seed))
        dens = self.density
        if isinstance(dens, str):
            if dens not in NAMED_DENSITY[self.kind]:
                raise ValueError(f"world density must be a number or one of "
                                 f"{tuple(NAMED_DENSITY[self.kind])}, got {dens!r}")
            dens = NAMED_DENSITY[self.kind][dens]
        dens = float(dens)
        if not (np.isfinite(dens) and 0.0 <= dens <= 100.0):
            raise ValueError(f"world density must be in [0, 100], got {self.density!r}")
        object.__setattr__(self, "density", dens)
        ext = DEFAULT_EXTENT[self.kind] if self.extent is None else self.extent
        try:
            ext = tuple(float(e) for e in ext)
        except TypeError:
            raise ValueError(f"world extent must be (length, width), got {self.extent!r}") from None
        if len(ext) != 2 or not all(np.isfinite(e) and 8.0 <= e <= MAX_EXTENT_M for e in ext):
            raise ValueError(f"world extent must be two lengths in [8, {MAX_EXTENT_M}] m, got {self.extent!r}")
        object.__setattr__(self, "extent", ext)

    def to_dict(self) -> dict:
        """JSON-safe dict (stored in bags and dataset manifests)."""
        return {"kind": self.kind, "seed": self.seed, "density": self.density, "extent": list(self.extent)}

    @classmethod
    def from_dict(cls, d) -> "WorldSpec":
        """Inverse of :meth:`to_dict`; also accepts a JSON string."""
        if isinstance(d, (str, bytes)):
            d = json.loads(d)
        if not isinstance(d, dict):
            raise ValueError(f"world spec must be a dict, got {type(d).__name__}")
        unknown = set(d) - {"kind", "seed", "density", "extent"}
        if unknown:
            raise ValueError(f"world spec has unknown fields {sorted(unknown)}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_params(cls, kind: str, seed: int, density: float | str, extent) -> "WorldSpec":
        """From node or launch parameters, which have no None: ``extent`` [0, 0] stands for the
        kind's default size."""
        ext = [float(e) for e in extent]
        if len(ext) != 2:
            raise ValueError(f"world extent must be [length, width], got {extent!r}")
        return cls(kind, int(seed), density, None if ext == [0.0, 0.0] else tuple(ext))


@dataclass(frozen=True)
class RayHits:
    """Result of :meth:`World.raycast` for N rays.

    ``t_hit`` is in units of the ray direction length (inf on miss),
    ``material`` the hit triangle's material (``Material.MISS`` on miss),
    ``normals`` unit surface normals facing against the ray (0 on miss).
    """

    t_hit: np.ndarray      # (N,) float32
    material: np.ndarray   # (N,) uint8
    primitive: np.ndarray  # (N,) uint32 triangle index (0xFFFFFFFF on miss)
    normals: np.ndarray    # (N, 3) float32

    @property
    def hit(self) -> np.ndarray:
        return np.isfinite(self.t_hit)


@dataclass(eq=False)
class World:
    """A triangle-mesh world with ground-truth queries.

    Build one from a spec with :func:`build_world`, or from any mesh with
    :meth:`World.from_mesh` (tests use analytic planes and cylinders).
    """

    vertices: np.ndarray                 # (V, 3) float32
    triangles: np.ndarray                # (T, 3) uint32
    materials: np.ndarray                # (T,) uint8
    start: np.ndarray                    # (3,) metres
    goal: np.ndarray                     # (3,) metres
    spec: WorldSpec | None = None
    nthreads: int = 0
    ground_height: object = None         # callable (x, y) -> z of the terrain, or None (z = 0)
    backdrop_triangles: int = 0          # trailing triangles of distant terrain, outside ``bounds``
    _scene: o3d.t.geometry.RaycastingScene = field(init=False, repr=False)

    def __post_init__(self):
        v = np.ascontiguousarray(self.vertices, dtype=np.float32)
        t = np.ascontiguousarray(self.triangles, dtype=np.uint32)
        m = np.ascontiguousarray(self.materials, dtype=np.uint8)
        if v.ndim != 2 or v.shape[1] != 3 or len(v) < 3 or not np.all(np.isfinite(v)):
            raise ValueError(f"world vertices must be finite (V>=3, 3), got shape {v.shape}")
        if t.ndim != 2 or t.shape[1] != 3 or len(t) < 1 or t.max() >= len(v):
            raise ValueError(f"world triangles must be (T, 3) indices < {len(v)}, got shape {t.shape}")
        if m.shape != (len(t),):
            raise ValueError(f"world materials must have shape ({len(t)},), got {m.shape}")
        n_back = self.backdrop_triangles
        if isinstance(n_back, bool) or not isinstance(n_back, (int, np.integer)) or not 0 <= n_back < len(t):
            raise ValueError(f"backdrop_triangles must be an integer in [0, {len(t)}), got {n_back!r}")
        self.vertices, self.triangles, self.materials = v, t, m
        used = v[t[:len(t) - int(n_back)].ravel()]
        self._bounds = np.stack([used.min(0), used.max(0)]).astype(np.float64)
        self._material_lut = np.append(m, np.uint8(Material.MISS))   # index len(m) = miss
        self.start = np.asarray(self.start, dtype=np.float64).reshape(3)
        self.goal = np.asarray(self.goal, dtype=np.float64).reshape(3)
        self._scene = o3d.t.geometry.RaycastingScene(nthreads=int(self.nthreads))
        self._scene.add_triangles(o3d.core.Tensor(v), o3d.core.Tensor(t))

    @classmethod
    def from_mesh(cls, mesh, material: Material | np.ndarray = Material.CONCRETE, start=(0.0, 0.0, 1.5),
                  goal=(10.0, 0.0, 1.5), nthreads: int = 0) -> "World":
        """World from an Open3D mesh (legacy or tensor) or a ``(vertices, triangles)`` pair."""
        if isinstance(mesh, o3d.t.geometry.TriangleMesh):
            mesh = mesh.to_legacy()
        if isinstance(mesh, o3d.geometry.TriangleMesh):
            v, t = np.asarray(mesh.vertices), np.asarray(mesh.triangles)
        else:
            v, t = mesh
        t = np.asarray(t)
        mats = np.broadcast_to(np.asarray(material, dtype=np.uint8), (len(t),)).copy()
        return cls(v, t, mats, start=start, goal=goal, nthreads=nthreads)

    # -- queries --------------------------------------------------------------
    def raycast(self, origins, dirs) -> RayHits:
        """Cast N rays ``origins + t * dirs`` (world frame); see :class:`RayHits`."""
        o = np.asarray(origins, dtype=np.float32).reshape(-1, 3)
        d = np.asarray(dirs, dtype=np.float32).reshape(-1, 3)
        if len(o) == 1 and len(d) > 1:
            o = np.broadcast_to(o, d.shape)
        if o.shape != d.shape:
            raise ValueError(f"origins {o.shape} and dirs {d.shape} must both be (N, 3)")
        if not (np.all(np.isfinite(o)) and np.all(np.isfinite(d))):
            raise ValueError("ray origins and dirs must be finite")
        return self.cast_packed(np.concatenate([o, d], axis=1))

    def _cast(self, rays: np.ndarray) -> tuple[np.ndarray, dict]:
        """Validated contiguous (N, 6) float32 rays and Open3D's ``cast_rays`` result for them."""
        rays = np.ascontiguousarray(rays, dtype=np.float32)
        if rays.ndim != 2 or rays.shape[1] != 6:
            raise ValueError(f"rays must be (N, 6) [origin, direction], got {rays.shape}")
        return rays, self._scene.cast_rays(o3d.core.Tensor.from_numpy(rays), nthreads=int(self.nthreads))

    def hit_distance(self, rays: np.ndarray) -> np.ndarray:
        """(N,) float32 ray parameter of the first hit (inf on miss) for (N, 6) ``[origin, direction]`` rays.

        The cheapest query when only depth is needed (no materials or normals).
        """
        return self._cast(rays)[1]["t_hit"].numpy()

    def cast_packed(self, rays: np.ndarray) -> RayHits:
        """Like :meth:`raycast` for a prepared (N, 6) float32 ``[origin, direction]`` array."""
        rays, res = self._cast(rays)
        d = rays[:, 3:]
        t_hit = res["t_hit"].numpy()
        prim = res["primitive_ids"].numpy()
        hit = np.isfinite(t_hit)
        # misses carry primitive id 0xFFFFFFFF: clamp them onto the trailing MISS entry
        mat = np.take(self._material_lut, np.minimum(prim, len(self.materials)))
        n = res["primitive_normals"].numpy()
        # face the rays: -1 where the normal points along the ray, 0 on a miss
        sign = np.where(np.einsum("ij,ij->i", n, d) > 0, np.float32(-1.0), np.float32(1.0))
        sign *= hit
        n *= sign[:, None]
        return RayHits(t_hit=t_hit, material=mat, primitive=prim, normals=n)

    def distance(self, points) -> np.ndarray:
        """Unsigned distance (metres, float32) from each (N, 3) point to the nearest surface."""
        p = np.ascontiguousarray(np.asarray(points, dtype=np.float32).reshape(-1, 3))
        if not np.all(np.isfinite(p)):
            raise ValueError("distance query points must be finite")
        return self._scene.compute_distance(o3d.core.Tensor(p), nthreads=int(self.nthreads)).numpy()

    def ground_z(self, x, y) -> np.ndarray:
        """Terrain height (metres) under world (x, y); 0 for worlds without terrain."""
        x = np.asarray(x, dtype=np.float64)
        if self.ground_height is None:
            return np.zeros_like(x + np.asarray(y, dtype=np.float64))
        return self.ground_height(x, np.asarray(y, dtype=np.float64))

    # -- geometry -------------------------------------------------------------
    @property
    def bounds(self) -> np.ndarray:
        """(2, 3) axis-aligned bounding box [min, max] of the world's area, metres: the
        mesh without its backdrop terrain."""
        return self._bounds.copy()

    @property
    def mesh(self) -> o3d.geometry.TriangleMesh:
        """Legacy Open3D mesh (for preview and evaluation)."""
        m = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(self.vertices.astype(np.float64)),
                                      o3d.utility.Vector3iVector(self.triangles.astype(np.int32)))
        m.compute_triangle_normals()
        return m

    @property
    def n_triangles(self) -> int:
        return int(len(self.triangles))


def build_world(spec: WorldSpec | dict, nthreads: int = 0) -> World:
    """Build the world a spec describes (deterministic in the spec)."""
    from depth_nodes.sim.worlds import BUILDERS

    if isinstance(spec, dict):
        spec = WorldSpec.from_dict(spec)
    if not isinstance(spec, WorldSpec):
        raise ValueError(f"spec must be a WorldSpec or dict, got {type(spec).__name__}")
    return BUILDERS[spec.kind](spec, nthreads=nthreads)
