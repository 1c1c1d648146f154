"""Z-buffer triangle rasterizer for the simulator cameras (a fast stand-in for per-pixel ray casting).

For every pixel of a :class:`~depth_nodes.camera.PinholeCamera` at a pose it finds
what a ray cast along the pixel ray (``camera.rays()``, optical z = 1) would: the
depth of the nearest surface along the optical axis (metres; the ray parameter
for a z = 1 direction) and the index of the triangle hit.

How it stays exact:

* Pixels are sampled at the ray directions of ``camera.rays()`` (pixel centres,
  ``u = fx x + cx``), so thin geometry is point-sampled exactly like ray casting.
* Inside tests are done in 3D on the camera-frame vertices: a ray ``d`` from the
  optical centre passes through triangle ``(v0, v1, v2)`` in front of the camera
  iff ``d . (va x vb)`` has the orientation sign ``sign(v0 . (v1 x v2))`` for all
  three edges. A shared edge gives bitwise negated values in its two triangles,
  so closed meshes have no cracks, and vertices behind the camera need no
  clipping (no wrap-around).
* Depth is the exact ray/plane intersection ``t = (n . v0) / (n . d)`` in float64,
  not an interpolated 1/z.
* Near plane: only hits with depth >= :data:`NEAR_M` count; triangles crossing it
  are clipped (for their pixel bounding box only).

Differences to Open3D/Embree ray casting, by design: a pixel centre exactly on an
edge is inside both triangles (the nearer wins, then the lower triangle index),
and depths below :data:`NEAR_M` are misses. Embree computes in float32, so pixel
rays that graze a silhouette within ~1e-6 of an edge may pick the other surface.

Speed: triangles go near to far in groups of consecutive triangles (world meshes
are built object by object, so a group is compact). A group (by its bounding box)
or a triangle that lies behind everything drawn in every 4 x 4 pixel tile it
covers is skipped (exact: it could not win any pixel). Threads split an image into
interleaved bands of tile rows (so sky and ground spread evenly); every band sees
all triangles, and the result does not depend on the number of bands. Hit records
(world ray direction, material, ray-facing normal) are filled per band as well.
"""
from __future__ import annotations

from concurrent.futures import Executor

import numba
import numpy as np

from depth_nodes.camera import PinholeCamera
from depth_nodes.geometry import check_pose
from depth_nodes.sim.materials import Material
from depth_nodes.sim.world import RayHits

#: Nearest depth (metres along optical z) a pixel can see.
NEAR_M = 1e-3
#: Triangle index stored for pixels that hit nothing (as Open3D's ``primitive_ids``).
MISS_ID = 0xFFFFFFFF
#: Slack (pixels) of triangle bounding boxes: covers the float32 rounding of the pixel rays.
_BBOX_SLACK_PX = 1e-3
#: Bounding boxes at least this many columns wide get per-row column spans (narrower: test every pixel).
_SPAN_MIN_WIDTH = 8
#: Side (pixels) of the tiles of the occlusion test.
_TILE = 4
#: Consecutive triangles per group: the unit of near-to-far ordering.
GROUP_SIZE = 32


@numba.njit(cache=True, nogil=True)
def _project_vertices(verts, R, t, fx, fy, cx, cy, x_lo, x_hi, y_lo, y_hi, near, cam, code):  # pragma: no cover
    """Camera-frame vertices and pixel coordinates ``cam`` (V, 5) ``[x, y, z, u, v]`` and outcodes ``code``.

    ``u, v`` are valid where z >= near (one record per vertex keeps a triangle's data in few cache lines).

    Outcode bits: 1 behind the near plane, 2/4 left/right of the outermost pixel-centre
    columns ``x_lo``/``x_hi`` (x / z), 8/16 above/below the outermost rows.
    """
    for k in range(verts.shape[0]):
        px = verts[k, 0] - t[0]
        py = verts[k, 1] - t[1]
        pz = verts[k, 2] - t[2]
        x = R[0, 0] * px + R[1, 0] * py + R[2, 0] * pz       # R^T (p - t)
        y = R[0, 1] * px + R[1, 1] * py + R[2, 1] * pz
        z = R[0, 2] * px + R[1, 2] * py + R[2, 2] * pz
        cam[k, 0] = x
        cam[k, 1] = y
        cam[k, 2] = z
        c = 0
        if z < near:
            c |= 1
        else:
            cam[k, 3] = fx * x / z + cx
            cam[k, 4] = fy * y / z + cy
        if x < x_lo * z:
            c |= 2
        if x > x_hi * z:
            c |= 4
        if y < y_lo * z:
            c |= 8
        if y > y_hi * z:
            c |= 16
        code[k] = c


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _raster_band(tris, cam, code, xs, ys, fx, fy, cx, cy, near, slack, groups, group_size, group_lo, group_hi,
                 R, t, band, n_bands, zbuf, prim):  # pragma: no cover
    """Rasterize the triangles of ``groups`` into the tile rows ``band, band + n_bands, ...``.

    ``groups`` are runs of ``group_size`` consecutive triangles, best near to far, with world
    bounding boxes ``group_lo``/``group_hi`` (G, 3); ``R``, ``t`` the camera pose. ``zbuf``
    (H, W) float64 starts at +inf, ``prim`` (H, W) int64 at -1; only this band's rows are
    touched, so bands can run on threads at once. A hit replaces the stored one if nearer,
    or equally near with a lower triangle index, so the result does not depend on the
    order of ``groups``.

    Occlusion: per tile the farthest stored depth is kept, recomputed after writes at most
    once per group (a stale value is still an upper bound: depths only shrink). A group
    bounding box or triangle whose nearest point is beyond it in every tile it spans cannot
    win a pixel and is skipped. (All in one function: calls that pass arrays cost refcounting.)
    """
    h = ys.shape[0]
    w = xs.shape[0]
    n_tris = tris.shape[0]
    tile_far = np.full(((h + _TILE - 1) // _TILE, (w + _TILE - 1) // _TILE), np.inf)
    tile_dirty = np.zeros(tile_far.shape, np.bool_)
    tile_stamp = np.full(tile_far.shape, -1, np.int64)
    col_far = np.empty(_TILE)
    bx = np.empty(4)
    by = np.empty(4)
    # band_row[ty]: the first tile row >= ty in this band (no integer division per triangle)
    band_row = np.empty(tile_far.shape[0] + 1, np.int64)
    for ty in range(tile_far.shape[0] + 1):
        band_row[ty] = ty + (band - ty) % n_bands
    for gi in range(groups.shape[0]):
        g = groups[gi]
        first = g * group_size
        # item first - 1 is the group's bounding box, then its triangles
        for ti in range(first - 1, min(first + group_size, n_tris)):
            a = b = c = 0
            if ti < first:
                z_min, umin, umax, vmin, vmax = np.inf, np.inf, -np.inf, np.inf, -np.inf
                for k in range(8):
                    px = (group_hi[g, 0] if k & 1 else group_lo[g, 0]) - t[0]
                    py = (group_hi[g, 1] if k & 2 else group_lo[g, 1]) - t[1]
                    pz = (group_hi[g, 2] if k & 4 else group_lo[g, 2]) - t[2]
                    z = R[0, 2] * px + R[1, 2] * py + R[2, 2] * pz
                    u = fx * (R[0, 0] * px + R[1, 0] * py + R[2, 0] * pz) / z + cx
                    v = fy * (R[0, 1] * px + R[1, 1] * py + R[2, 1] * pz) / z + cy
                    z_min, umin, umax = min(z_min, z), min(umin, u), max(umax, u)
                    vmin, vmax = min(vmin, v), max(vmax, v)
                if not z_min > near:
                    continue                                 # box reaches behind the camera: no box test
                z_min *= 1.0 - 1e-9
            else:
                a = tris[ti, 0]
                b = tris[ti, 1]
                c = tris[ti, 2]
                if code[a] & code[b] & code[c]:
                    continue                                 # all outside one frustum plane
                # pixel bounding box (of the part in front of the near plane)
                if (code[a] | code[b] | code[c]) & 1 == 0:
                    umin = min(cam[a, 3], cam[b, 3], cam[c, 3])
                    umax = max(cam[a, 3], cam[b, 3], cam[c, 3])
                    vmin = min(cam[a, 4], cam[b, 4], cam[c, 4])
                    vmax = max(cam[a, 4], cam[b, 4], cam[c, 4])
                else:
                    n_pts = 0
                    for e in range(3):
                        p = tris[ti, e]
                        q = tris[ti, (e + 1) % 3]
                        zp = cam[p, 2]
                        zq = cam[q, 2]
                        if zp >= near:
                            bx[n_pts] = cam[p, 3]
                            by[n_pts] = cam[p, 4]
                            n_pts += 1
                        if (zp >= near) != (zq >= near):     # edge crosses the near plane
                            s = (near - zp) / (zq - zp)
                            bx[n_pts] = fx * (cam[p, 0] + s * (cam[q, 0] - cam[p, 0])) / near + cx
                            by[n_pts] = fy * (cam[p, 1] + s * (cam[q, 1] - cam[p, 1])) / near + cy
                            n_pts += 1
                    umin, umax, vmin, vmax = bx[0], bx[0], by[0], by[0]
                    for k in range(1, n_pts):
                        umin, umax = min(umin, bx[k]), max(umax, bx[k])
                        vmin, vmax = min(vmin, by[k]), max(vmax, by[k])
                z_min = min(cam[a, 2], cam[b, 2], cam[c, 2])
                z_min -= 1e-9 * abs(z_min)                   # margin for the rounding of the hit depth
            i0 = max(int(np.ceil(max(umin, -1.0) - slack)), 0)
            i1 = min(int(np.floor(min(umax, w + 1.0) + slack)), w - 1)
            j0 = max(int(np.ceil(max(vmin, -1.0) - slack)), 0)
            j1 = min(int(np.floor(min(vmax, h + 1.0) + slack)), h - 1)
            hidden = i0 > i1 or j0 > j1                       # covers no pixel centre
            ty0 = 0 if hidden else band_row[j0 // _TILE]
            hidden = hidden or ty0 > j1 // _TILE             # ... of this band
            # occlusion test against this band's tiles
            visible = False
            ty = ty0
            while not (hidden or visible) and ty <= j1 // _TILE:
                for tx in range(i0 // _TILE, i1 // _TILE + 1):
                    if tile_dirty[ty, tx] and tile_stamp[ty, tx] != gi:
                        tile_stamp[ty, tx] = gi
                        tile_dirty[ty, tx] = False
                        x0 = tx * _TILE
                        n = min(_TILE, w - x0)
                        for q in range(n):                   # per-column maxima: independent chains
                            col_far[q] = zbuf[ty * _TILE, x0 + q]
                        for jj in range(ty * _TILE + 1, min((ty + 1) * _TILE, h)):
                            for q in range(n):
                                col_far[q] = max(col_far[q], zbuf[jj, x0 + q])
                        far = col_far[0]
                        for q in range(1, n):
                            far = max(far, col_far[q])
                        tile_far[ty, tx] = far
                    if tile_far[ty, tx] >= z_min:
                        visible = True
                        break
                ty += n_bands
            hidden = not visible
            if ti < first:
                if hidden:
                    break                                    # the whole group is off screen or occluded
                continue
            if hidden:
                continue
            ax, ay, az = cam[a, 0], cam[a, 1], cam[a, 2]
            bx_, by_, bz = cam[b, 0], cam[b, 1], cam[b, 2]
            cx_, cy_, cz = cam[c, 0], cam[c, 1], cam[c, 2]
            # plane normal and n . v0 (the triple product v0 . (v1 x v2))
            ux, uy, uz = bx_ - ax, by_ - ay, bz - az
            vx, vy, vz = cx_ - ax, cy_ - ay, cz - az
            nx = uy * vz - uz * vy
            ny = uz * vx - ux * vz
            nz = ux * vy - uy * vx
            det = nx * ax + ny * ay + nz * az
            if det == 0.0 or not np.isfinite(det):
                continue                                     # degenerate or seen edge-on
            sgn = 1.0 if det > 0.0 else -1.0
            # edge planes through the optical centre, oriented so inside is >= 0
            e0x = sgn * (by_ * cz - bz * cy_)
            e0y = sgn * (bz * cx_ - bx_ * cz)
            e0z = sgn * (bx_ * cy_ - by_ * cx_)
            e1x = sgn * (cy_ * az - cz * ay)
            e1y = sgn * (cz * ax - cx_ * az)
            e1z = sgn * (cx_ * ay - cy_ * ax)
            e2x = sgn * (ay * bz - az * by_)
            e2y = sgn * (az * bx_ - ax * bz)
            e2z = sgn * (ax * by_ - ay * bx_)
            ty = ty0
            while ty <= j1 // _TILE:
                dirty = False
                for j in range(max(j0, ty * _TILE), min(j1, ty * _TILE + _TILE - 1) + 1):
                    y = ys[j]
                    r0 = e0y * y + e0z
                    r1 = e1y * y + e1z
                    r2 = e2y * y + e2z
                    rn = ny * y + nz
                    c0, c1 = i0, i1
                    if i1 - i0 >= _SPAN_MIN_WIDTH:
                        # wide triangle: columns where each edge function (linear in x) is >= 0, plus slack
                        lo, hi = float(i0), float(i1)
                        if e0x != 0.0:
                            lim = fx * (-r0 / e0x) + cx
                            lo, hi = (max(lo, lim - slack), hi) if e0x > 0.0 else (lo, min(hi, lim + slack))
                        if e1x != 0.0:
                            lim = fx * (-r1 / e1x) + cx
                            lo, hi = (max(lo, lim - slack), hi) if e1x > 0.0 else (lo, min(hi, lim + slack))
                        if e2x != 0.0:
                            lim = fx * (-r2 / e2x) + cx
                            lo, hi = (max(lo, lim - slack), hi) if e2x > 0.0 else (lo, min(hi, lim + slack))
                        if lo > hi:
                            continue
                        c0, c1 = int(np.ceil(lo)), int(np.floor(hi))
                    for i in range(c0, c1 + 1):
                        # branch-free body: with small triangles every branch here is unpredictable
                        x = xs[i]
                        d = det / (nx * x + rn)              # inf/nan where the ray misses the plane
                        z_old = zbuf[j, i]
                        p_old = prim[j, i]
                        take = ((e0x * x + r0 >= 0.0) & (e1x * x + r1 >= 0.0) & (e2x * x + r2 >= 0.0)
                                & (d >= near) & ((d < z_old) | ((d == z_old) & (ti < p_old))))
                        zbuf[j, i] = d if take else z_old
                        prim[j, i] = ti if take else p_old
                        dirty |= take
                if dirty:
                    for tx in range(i0 // _TILE, i1 // _TILE + 1):
                        tile_dirty[ty, tx] = True
                ty += n_bands


@numba.njit(cache=True, nogil=True)
def _resolve_band(zbuf, prim, rays, R, normal_lut, material_lut, band, n_bands,
                  t_hit, prim_out, material, normals, dirs):  # pragma: no cover
    """Per pixel of the band's tile rows: world ray direction, hit, material and ray-facing normal.

    ``rays`` (H, W, 3) float32 optical directions, ``R`` (3, 3) float32 world <- optical,
    ``normal_lut`` (T + 1, 3) / ``material_lut`` (T + 1,) with the miss entry last.
    Outputs (H, W[, 3]): ``t_hit`` float32 (inf on miss), ``prim_out`` uint32 (MISS_ID on
    miss), ``material`` uint8, ``normals`` float32 (0 on miss), ``dirs`` float32.
    """
    h, w = zbuf.shape
    miss = material_lut.shape[0] - 1
    for ty in range(band, (h + _TILE - 1) // _TILE, n_bands):
        for j in range(ty * _TILE, min((ty + 1) * _TILE, h)):
            for i in range(w):
                rx, ry, rz = rays[j, i, 0], rays[j, i, 1], rays[j, i, 2]
                dx = R[0, 0] * rx + R[0, 1] * ry + R[0, 2] * rz
                dy = R[1, 0] * rx + R[1, 1] * ry + R[1, 2] * rz
                dz = R[2, 0] * rx + R[2, 1] * ry + R[2, 2] * rz
                dirs[j, i, 0], dirs[j, i, 1], dirs[j, i, 2] = dx, dy, dz
                p = prim[j, i]
                k = miss if p < 0 else p
                nx, ny, nz = normal_lut[k, 0], normal_lut[k, 1], normal_lut[k, 2]
                if nx * dx + ny * dy + nz * dz > 0:             # face the ray
                    nx, ny, nz = -nx, -ny, -nz
                normals[j, i, 0], normals[j, i, 1], normals[j, i, 2] = nx, ny, nz
                material[j, i] = material_lut[k]
                t_hit[j, i] = zbuf[j, i]
                prim_out[j, i] = MISS_ID if p < 0 else p


def triangle_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(T, 3) float32 unit normals from each triangle's winding (0 for degenerate triangles)."""
    v = np.asarray(vertices, dtype=np.float64)
    a, b, c = (v[triangles[:, k]] for k in range(3))
    n = np.cross(b - a, c - a)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    return np.divide(n, length, out=np.zeros_like(n), where=length > 0).astype(np.float32)


class TriangleRasterizer:
    """Rasterizes one triangle mesh (world frame) for one camera's pixel rays.

    ``vertices`` (V, 3) and ``triangles`` (T, 3), ``materials`` (T,) uint8 as in
    :class:`~depth_nodes.sim.world.World` (default all 0). :meth:`render` returns what a
    ray cast of ``camera.rays()`` from the pose gives, as :class:`~depth_nodes.sim.world.RayHits`
    (``t_hit`` = depth along optical z, float32 metres, inf on miss; ``primitive`` the
    triangle index, :data:`MISS_ID` on miss; ``normals`` facing the rays) flattened row-major
    (H * W,), together with the world ray directions (H * W, 3) float32 (optical z = 1).
    """

    def __init__(self, vertices: np.ndarray, triangles: np.ndarray, camera: PinholeCamera,
                 materials: np.ndarray | None = None):
        if not isinstance(camera, PinholeCamera):
            raise ValueError(f"camera must be a PinholeCamera, got {type(camera).__name__}")
        v = np.ascontiguousarray(vertices, dtype=np.float64)
        t = np.ascontiguousarray(triangles, dtype=np.uint32)
        if v.ndim != 2 or v.shape[1] != 3 or not np.all(np.isfinite(v)):
            raise ValueError(f"vertices must be finite (V, 3), got shape {v.shape}")
        if t.ndim != 2 or t.shape[1] != 3 or len(t) >= 2 ** 31 or (t.size and int(t.max()) >= len(v)):
            raise ValueError(f"triangles must be (T, 3) indices < {len(v)}, got shape {t.shape}")
        m = np.zeros(len(t), np.uint8) if materials is None else np.asarray(materials, dtype=np.uint8)
        if m.shape != (len(t),):
            raise ValueError(f"materials must have shape ({len(t)},), got {m.shape}")
        self.camera = camera
        self._verts, self._tris = v, t
        self._normal_lut = np.vstack([triangle_normals(v, t), np.zeros((1, 3), np.float32)])
        self._material_lut = np.append(m, np.uint8(Material.MISS))
        # world bounding box of each group of GROUP_SIZE consecutive triangles (built together, so compact)
        corners = v[t.reshape(-1)].reshape(-1, 3)
        starts = np.arange(0, len(corners), 3 * GROUP_SIZE)
        self._group_lo = np.minimum.reduceat(corners, starts, axis=0) if len(t) else np.empty((0, 3))
        self._group_hi = np.maximum.reduceat(corners, starts, axis=0) if len(t) else np.empty((0, 3))
        self._rays = camera.rays(np.float32)               # the exact directions ray casting uses
        self._xs = np.ascontiguousarray(self._rays[0, :, 0], dtype=np.float64)
        self._ys = np.ascontiguousarray(self._rays[:, 0, 1], dtype=np.float64)

    def _project(self, T_world_cam, pool: Executor | None, parts: int) -> tuple:
        """Camera-frame vertices, pixel coordinates, frustum outcodes (in ``parts`` vertex ranges on
        ``pool``), front-to-back group order and the pose's rotation and translation."""
        T = check_pose(T_world_cam, "T_world_cam")
        n = len(self._verts)
        cam, code = np.empty((n, 5)), np.empty(n, np.uint8)     # u, v are only read where z >= near
        R, t = np.ascontiguousarray(T[:3, :3]), np.ascontiguousarray(T[:3, 3])
        k = self.camera
        edges = np.linspace(0, n, parts + 1).round().astype(int)

        def run(part: int) -> None:
            lo, hi = edges[part], edges[part + 1]
            _project_vertices(self._verts[lo:hi], R, t, k.fx, k.fy, k.cx, k.cy, self._xs[0], self._xs[-1],
                              self._ys[0], self._ys[-1], NEAR_M, cam[lo:hi], code[lo:hi])

        if pool is not None and parts > 1:
            list(pool.map(run, range(parts)))
        else:
            for part in range(parts):
                run(part)
        # distance from the camera to each group's bounding box orders the groups near to far
        gap = np.maximum(self._group_lo - T[:3, 3], 0.0) + np.maximum(T[:3, 3] - self._group_hi, 0.0)
        order = np.argsort(np.einsum("ij,ij->i", gap, gap), kind="stable")
        return cam, code, order, R, t

    def render(self, T_world_cam, pool: Executor | None = None, bands: int = 1) -> tuple[RayHits, np.ndarray]:
        """(hits, world ray directions (H*W, 3) float32) at one pose; see :meth:`render_many`."""
        return self.render_many([T_world_cam], pool, bands)[0]

    def render_many(self, poses, pool: Executor | None = None, bands: int = 1) -> list[tuple[RayHits, np.ndarray]]:
        """[(hits, world ray directions)] of several poses.

        Each image splits into ``bands`` interleaved bands of tile rows that run on ``pool``
        (all poses' bands at once); results are identical for any ``bands``.
        """
        bands = int(bands)
        if bands < 1:
            raise ValueError(f"bands must be >= 1, got {bands}")
        views = [self._project(T, pool, bands) for T in poses]
        h, w = self.camera.height, self.camera.width
        bufs = [(np.full((h, w), np.inf), np.full((h, w), -1, np.int64)) for _ in views]
        outs = [(np.empty((h, w), np.float32), np.empty((h, w), np.uint32), np.empty((h, w), np.uint8),
                 np.empty((h, w, 3), np.float32), np.empty((h, w, 3), np.float32)) for _ in views]

        def run(job) -> None:
            v, b = job
            cam, code, order, R, t = views[v]
            k = self.camera
            _raster_band(self._tris, cam, code, self._xs, self._ys, k.fx, k.fy, k.cx, k.cy, NEAR_M,
                         _BBOX_SLACK_PX, order, GROUP_SIZE, self._group_lo, self._group_hi, R, t, b, bands,
                         *bufs[v])
            _resolve_band(*bufs[v], self._rays, R.astype(np.float32), self._normal_lut, self._material_lut,
                          b, bands, *outs[v])

        jobs = [(v, b) for v in range(len(views)) for b in range(bands)]
        if pool is not None and len(jobs) > 1:
            list(pool.map(run, jobs))
        else:
            for job in jobs:
                run(job)
        n = h * w
        return [(RayHits(t_hit=t_hit.reshape(n), material=mat.reshape(n), primitive=prim.reshape(n),
                         normals=nrm.reshape(n, 3)), dirs.reshape(n, 3))
                for t_hit, prim, mat, nrm, dirs in outs]
