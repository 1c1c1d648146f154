"""Collision checking of all primitives x path points at once.

A primitive's path is its S samples followed by K stopping-tail points (the
stop from its end state), so a feasible primitive leaves the vehicle able to
stop. Two obstacle sources, both optional and combined:

* a :class:`~depth_nodes.planning.distance.DistanceField` (the map): a point
  is blocked when its distance is below the required clearance;
* the newest depth image (:class:`DepthObstacleImage`): a point projected into
  the image is blocked when it lies deeper than the (eroded) observed depth
  minus the required clearance, i.e. at or behind a seen surface.

A point is known when either source observed it. Unknown points follow an
:class:`UnknownPolicy`. The required clearance of a primitive is
``robot_radius + margin`` plus half its longest step between path points, so
the straight segments between them are covered too. Point 0 (the current
state) never blocks: nothing the planner picks can change it.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import cv2
import numpy as np
from scipy import ndimage

from depth_nodes.geometry import invert_pose
from depth_nodes.planning import kernels
from depth_nodes.planning.distance import DistanceField
from depth_nodes.planning.primitives import PrimitiveSet
from depth_nodes.planning.state import DepthFrame

#: Lower edges (m, optical z) of the depth bins that get their own erosion level:
#: geometric with ratio sqrt(2) from 0.5 m, so a sample's window is at most sqrt(2)
#: wider than its depth needs (below 0.5 m the whole image counts).
DEPTH_BIN_EDGES = tuple(np.concatenate([[0.0], 0.5 * np.sqrt(2.0) ** np.arange(10)]))


class UnknownPolicy(str, Enum):
    """How samples nobody observed are treated."""

    FORBID = "forbid"          # blocked beyond ``unknown_free_dist`` of the start
    PENALTY = "penalty"        # allowed, costed per unknown sample by the selector
    OPTIMISTIC = "optimistic"  # treated as free

    @classmethod
    def parse(cls, value) -> "UnknownPolicy":
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown_policy must be one of {[p.value for p in cls]}, got {value!r}") from None


@dataclass(frozen=True)
class CollisionResult:
    """Result over each primitive's path: its S samples then its K stopping-tail points.

    Per primitive: ``feasible`` (P,), ``min_clearance`` (P,) metres from the
    path (robot centre) to the nearest observed obstacle (+inf when none seen;
    map distance or depth-image gap along the ray), ``unknown_fraction`` (P,),
    ``first_collision`` (P,) path index (-1 when free; >= S means the vehicle
    could not stop after the primitive), ``required`` (P,) clearance used; per
    path point ``blocked`` and ``unknown`` (P, S + K). Point 0 (the start) is
    excluded from all of them."""

    feasible: np.ndarray
    min_clearance: np.ndarray
    unknown_fraction: np.ndarray
    first_collision: np.ndarray
    required: np.ndarray
    blocked: np.ndarray
    unknown: np.ndarray


def path_points(prims: PrimitiveSet) -> np.ndarray:
    """(P, S + K, 3): the samples followed by the stopping tail."""
    return np.concatenate([prims.pos, prims.tail], axis=1)


def required_clearance(prims: PrimitiveSet, robot_radius: float, margin: float) -> np.ndarray:
    """(P,) clearance: radius + margin + half the longest step between consecutive path points."""
    return robot_radius + margin + 0.5 * kernels.path_extent(path_points(prims))[2]


class DepthObstacleImage:
    """A depth frame prepared for collision queries (computed once per frame).

    For each depth bin ``[z_lo, z_hi)`` the image is min-filtered with a square
    window of half-width ``ceil(f * lateral_clearance / z_lo)`` pixels, so a
    sample at depth ``z >= z_lo`` sees the nearest surface within
    ``lateral_clearance`` metres sideways. Invalid (NaN) pixels do not block
    but leave samples behind them unknown, except samples closer than
    ``no_return_free_m`` (optical z): a sensor that returns nothing within its
    range has seen free space there (0: NaN never means free).

    ``pool`` > 1 first takes the minimum over ``pool x pool`` pixel tiles (a
    tile is invalid only when all its pixels are): the nearest surface of the
    tile stands for all of it, which is conservative and makes the erosion
    ``pool^2`` times cheaper.
    """

    def __init__(self, frame: DepthFrame, lateral_clearance: float, no_return_free_m: float = 0.0,
                 pool: int = 1):
        if not (np.isfinite(lateral_clearance) and lateral_clearance >= 0):
            raise ValueError(f"lateral_clearance must be finite and >= 0, got {lateral_clearance}")
        if not (np.isfinite(no_return_free_m) and no_return_free_m >= 0):
            raise ValueError(f"no_return_free_m must be finite and >= 0, got {no_return_free_m}")
        if isinstance(pool, bool) or not isinstance(pool, (int, np.integer)) or not 1 <= pool <= 16:
            raise ValueError(f"pool must be an integer in [1, 16], got {pool!r}")
        self.no_return_free_m = float(no_return_free_m)
        self.pool = int(pool)
        self.frame = frame
        self.camera = cam = frame.camera
        self.T_cam_world = invert_pose(frame.T_world_cam)
        filled = _min_pool(np.where(np.isnan(frame.depth), np.float32(np.inf), frame.depth), self.pool)
        self.invalid = np.isinf(filled)
        self.edges = np.asarray(DEPTH_BIN_EDGES, dtype=np.float64)
        f = max(cam.fx, cam.fy) / self.pool
        cap = max(filled.shape)
        halves = [cap if z_lo <= 0 else min(cap, int(np.ceil(f * lateral_clearance / z_lo))) for z_lo in self.edges]
        # windows compose (a square of half-width a then b = one of a + b), so erode
        # incrementally from the farthest bin (smallest window) to the nearest
        self.eroded = np.empty((len(halves),) + filled.shape, filled.dtype)  # (L, H, W)
        current, done = filled, 0
        for i in np.argsort(halves, kind="stable"):
            if halves[i] >= cap - 1:  # the window covers the whole image
                self.eroded[i] = filled.min()
                continue
            current = _min_filter(current, halves[i] - done)
            done = halves[i]
            self.eroded[i] = current
        self._intrinsics = np.array([cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height], dtype=np.float64)

    def query(self, points) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3) world points -> (gap (N,) metres, known (N,) bool).

        ``gap`` = eroded observed depth - sample depth (NaN where unknown); a
        sample with ``gap < clearance`` is at or behind a surface.
        """
        p = np.ascontiguousarray(np.asarray(points, dtype=np.float64).reshape(-1, 3))
        T = self.T_cam_world
        return kernels.project_depth(p, np.ascontiguousarray(T[:3, :3]), np.ascontiguousarray(T[:3, 3]),
                                     self._intrinsics, self.pool, self.edges, self.eroded, self.invalid,
                                     self.no_return_free_m)


def _min_pool(image: np.ndarray, pool: int) -> np.ndarray:
    """Minimum over ``pool x pool`` tiles (the last partial tiles padded with +inf)."""
    if pool == 1:
        return image
    H, W = image.shape
    h, w = -(-H // pool), -(-W // pool)
    if (h * pool, w * pool) != (H, W):
        padded = np.full((h * pool, w * pool), np.inf, dtype=image.dtype)
        padded[:H, :W] = image
        image = padded
    out = image[::pool, ::pool].copy()  # strided minima: far faster than a reshaped min over two axes
    for i in range(pool):
        for j in range(pool):
            if i or j:
                np.minimum(out, image[i::pool, j::pool], out=out)
    return out


def _min_filter(image: np.ndarray, half: int) -> np.ndarray:
    """Minimum over a (2 half + 1)^2 square window; outside the image counts as +inf."""
    if half <= 0:
        return image
    if half <= 48:  # OpenCV's erosion is O(window) but vectorised: faster for small windows
        kernel = np.ones((2 * half + 1, 2 * half + 1), np.uint8)
        return cv2.erode(image, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=float("inf"))
    return ndimage.minimum_filter(image, size=2 * half + 1, mode="constant", cval=np.inf)


def check_primitives(prims: PrimitiveSet, required: np.ndarray, *,
                     distance_field: DistanceField | None = None,
                     depth_image: DepthObstacleImage | None = None,
                     policy: UnknownPolicy = UnknownPolicy.FORBID,
                     unknown_free_dist: float = 0.5,
                     min_altitude: float | None = None,
                     max_altitude: float | None = None) -> CollisionResult:
    """Check every path point (samples and stopping tail) of every primitive against
    the map and/or the depth image.

    ``required`` (P,) clearance per primitive (see :func:`required_clearance`).
    ``min_altitude`` (m, world z) additionally blocks samples below it that are
    also below the start (so a vehicle on the ground can still climb out);
    ``max_altitude`` likewise blocks samples above it that are also above the start.
    """
    path = path_points(prims)
    P, S = path.shape[:2]
    required = np.asarray(required, dtype=np.float64).reshape(-1)
    if required.shape != (P,):
        raise ValueError(f"required must have shape ({P},), got {required.shape}")
    pts = path.reshape(-1, 3)
    sources = [s for s in (distance_field, depth_image) if s is not None]
    dist = np.empty((len(sources), P * S))
    known = np.empty((len(sources), P * S), dtype=bool)
    for i, source in enumerate(sources):
        d, k = source.query(pts)
        d = np.asarray(d).reshape(-1)
        k = np.asarray(k).reshape(-1)
        if d.shape != (P * S,) or k.shape != (P * S,):
            raise ValueError(f"{type(source).__name__}.query returned shapes {d.shape}, {k.shape} "
                             f"for {P * S} points")
        dist[i], known[i] = d, k
    blocked, unknown, min_clearance, unknown_fraction, first = kernels.combine_checks(
        path, required, dist, known, -np.inf if min_altitude is None else float(min_altitude),
        np.inf if max_altitude is None else float(max_altitude), policy is UnknownPolicy.FORBID,
        float(unknown_free_dist))
    return CollisionResult(feasible=first < 0, min_clearance=min_clearance, unknown_fraction=unknown_fraction,
                           first_collision=first, required=required, blocked=blocked, unknown=unknown)
