"""Cost-to-go toward the goal around observed obstacles (a 2-D navigation function).

Straight-line progress toward the goal traps a local planner behind a wall
whose doorway lies off to the side. :class:`GoalGuidance` is the geodesic
distance (metres) to the goal over a horizontal grid at flight altitude:
observed obstacles, inflated by the robot radius, are impassable, unobserved
cells are free (optimistic), so the cheapest way around a wall leads through
the nearest doorway the map has seen or has not yet ruled out. The planner
uses it in place of the Euclidean distance in its progress cost.

Frames: world ``map``, z up; the grid covers ``x, y`` only.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from depth_nodes.geometry import finite_scalar, finite_vector
from depth_nodes.planning.distance import as_points

#: Largest grid accepted (cells).
MAX_CELLS = 2_000_000
#: :func:`guidance_from_map` defaults: cell size (m), margin around the vehicle and the
#: goal (m), most reach from the vehicle (m; a sliding-window map forgets farther blocks anyway).
GUIDANCE_CELL_M = 0.2
GUIDANCE_MARGIN_M = 6.0
GUIDANCE_RADIUS_M = 25.0


class GoalGuidance:
    """Geodesic distance to ``goal`` on an (nx, ny) grid of ``cell`` metres.

    ``blocked[i, j]`` marks the cell whose minimum corner is
    ``origin_xy + cell * (i, j)`` as an obstacle (already inflated by the
    caller or by ``inflate_m`` here). The goal's cell (or, when the goal lies
    outside the grid, the grid cell nearest to it) is the source; values there
    are offset by the remaining straight-line distance. Cells that cannot be
    reached (obstacles, enclosed pockets) take the value of the nearest
    reachable cell plus the distance to it, so the field is finite everywhere
    inside the grid; outside it, the Euclidean distance to the goal is used.
    """

    def __init__(self, blocked, origin_xy, cell: float, goal, inflate_m: float = 0.0):
        from skimage.graph import MCP_Geometric

        b = np.asarray(blocked, dtype=bool)
        if b.ndim != 2 or min(b.shape) < 1 or b.size > MAX_CELLS:
            raise ValueError(f"blocked must be a non-empty 2-D grid of <= {MAX_CELLS} cells, got shape {b.shape}")
        self.cell = finite_scalar(cell, "cell")
        if self.cell <= 0:
            raise ValueError(f"cell must be > 0, got {self.cell}")
        inflate_m = finite_scalar(inflate_m, "inflate_m")
        if inflate_m < 0:
            raise ValueError(f"inflate_m must be >= 0, got {inflate_m}")
        self.origin = finite_vector(origin_xy, 2, "origin_xy")
        self.goal = finite_vector(goal, 3, "goal")
        if inflate_m > 0 and b.any():
            b = ndimage.distance_transform_edt(~b, sampling=self.cell) <= inflate_m
        src = np.clip(np.floor((self.goal[:2] - self.origin) / self.cell).astype(np.int64), 0,
                      np.array(b.shape) - 1)
        offset = float(np.linalg.norm(self.origin + (src + 0.5) * self.cell - self.goal[:2]))
        b[src[0], src[1]] = False
        costs = np.where(b, np.inf, 1.0)
        cum, _ = MCP_Geometric(costs, fully_connected=True).find_costs([tuple(int(s) for s in src)])
        cum = cum * self.cell + offset
        unreachable = ~np.isfinite(cum)
        if unreachable.any():
            near, idx = ndimage.distance_transform_edt(unreachable, sampling=self.cell, return_indices=True)
            cum = cum[idx[0], idx[1]] + near
        self.values = cum
        self.blocked = b

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.values.shape)

    def query(self, points) -> np.ndarray:
        """(N,) metres to the goal from (N, 3) world points: the grid's distance in x, y
        combined (as a hypotenuse) with the height difference to the goal. Without the
        height term a vehicle above or below the goal's cell had no reason to change
        altitude and could circle the goal out of reach."""
        p = as_points(points)
        out = np.linalg.norm(p[:, :2] - self.goal[:2], axis=1)
        with np.errstate(invalid="ignore"):
            f = np.floor((p[:, :2] - self.origin) / self.cell)
        inside = (f[:, 0] >= 0) & (f[:, 0] < self.shape[0]) & (f[:, 1] >= 0) & (f[:, 1] < self.shape[1])
        idx = f[inside].astype(np.int64)
        out[inside] = self.values[idx[:, 0], idx[:, 1]]
        return np.hypot(out, p[:, 2] - self.goal[2])


def guidance_from_occupancy(occupied, origin, voxel_size: float, goal, cell: float, inflate_m: float,
                            min_gap_m: float | None = None) -> GoalGuidance:
    """:class:`GoalGuidance` from an (nx, ny, nz) occupancy block (a slab of the flight band).

    A grid cell of ``cell`` metres (a multiple of ``voxel_size``, rounded)
    pools the voxel columns above it (a layer is occupied when any of its
    voxels is). With ``min_gap_m`` None the cell is blocked when any voxel in
    the slab is occupied; otherwise when the longest vertical run of
    unoccupied layers is shorter than ``min_gap_m`` metres, so a doorway under
    a lintel or the space above a low obstacle stays passable when the slab
    spans the whole band the vehicle may fly in. Unobserved voxels count as free.
    """
    occ = np.asarray(occupied, dtype=bool)
    if occ.ndim != 3 or min(occ.shape) < 1:
        raise ValueError(f"occupied must be a non-empty (nx, ny, nz) grid, got shape {occ.shape}")
    origin = finite_vector(origin, 3, "origin")
    voxel_size = finite_scalar(voxel_size, "voxel_size")
    if voxel_size <= 0:
        raise ValueError(f"voxel_size must be > 0, got {voxel_size}")
    if min_gap_m is not None:
        min_gap_m = finite_scalar(min_gap_m, "min_gap_m")
        if min_gap_m < 0:
            raise ValueError(f"min_gap_m must be >= 0 or None, got {min_gap_m}")
    k = max(1, int(round(cell / voxel_size)))
    nx, ny = -(-occ.shape[0] // k), -(-occ.shape[1] // k)
    padded = np.zeros((nx * k, ny * k, occ.shape[2]), bool)
    padded[:occ.shape[0], :occ.shape[1]] = occ
    layers = padded.reshape(nx, k, ny, k, -1).any(axis=(1, 3))  # (nx, ny, nz)
    if min_gap_m is None:
        blocked = layers.any(axis=2)
    else:
        blocked = _longest_free_run(layers) * voxel_size < min_gap_m - 1e-9
    return GoalGuidance(blocked, origin[:2], k * voxel_size, goal, inflate_m)


def _longest_free_run(layers: np.ndarray) -> np.ndarray:
    """(nx, ny) length (layers) of the longest run of False along the last axis of ``layers``."""
    run = np.zeros(layers.shape[:2], np.int32)
    best = np.zeros_like(run)
    for z in range(layers.shape[2]):
        run = np.where(layers[:, :, z], 0, run + 1)
        np.maximum(best, run, out=best)
    return best


def guidance_from_map(tsdf, pos, goal, inflate_m: float, z_band: tuple[float, float], min_gap_m: float | None,
                      cell_m: float = GUIDANCE_CELL_M, margin_m: float = GUIDANCE_MARGIN_M,
                      radius_m: float = GUIDANCE_RADIUS_M) -> GoalGuidance:
    """:class:`GoalGuidance` from a TSDF map's occupied voxels with world z in ``z_band``
    (the planner's altitude limits, metres), over the box around the vehicle ``pos`` and the
    ``goal`` grown by ``margin_m`` and at most ``radius_m`` from the vehicle; a cell is blocked
    without a ``min_gap_m`` free vertical gap. ``tsdf``: anything with ``config.voxel_size``
    and ``occupancy_window(lo, shape)`` (a :class:`~depth_nodes.mapping.tsdf.TsdfMap`)."""
    pos = finite_vector(pos, 3, "pos")
    goal = finite_vector(goal, 3, "goal")
    z0, z1 = (finite_scalar(z, "z_band") for z in z_band)
    if z1 <= z0:
        raise ValueError(f"z_band must be (low, high) with high > low, got {tuple(z_band)}")
    vs = tsdf.config.voxel_size
    lo = np.maximum(np.minimum(pos[:2], goal[:2]) - margin_m, pos[:2] - radius_m)
    hi = np.minimum(np.maximum(pos[:2], goal[:2]) + margin_m, pos[:2] + radius_m)
    lo_idx = np.floor(np.append(lo, z0) / vs).astype(np.int64)
    hi_idx = np.ceil(np.append(hi, z1) / vs).astype(np.int64)
    occupied, _ = tsdf.occupancy_window(lo_idx, hi_idx - lo_idx + 1)
    return guidance_from_occupancy(occupied, lo_idx * vs, vs, goal, cell_m, inflate_m, min_gap_m)
