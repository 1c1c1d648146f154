"""Projective TSDF update of whole voxel blocks in numpy (the CPU integration path).

The update is the one of Open3D's ``VoxelBlockGrid.integrate`` (0.20): every
voxel sample of the given blocks is projected into the depth image, the pixel
is chosen by truncating ``(u, v)`` (samples with ``u`` outside ``[0, W - 1]``
or ``v`` outside ``[0, H - 1]`` or behind the camera are skipped), and where
the pixel holds a depth ``D > 0`` with ``sdf = D - z >= -sdf_trunc`` the voxel
takes the running average of ``min(sdf, sdf_trunc) / sdf_trunc`` (and of the
pixel colour). Unlike Open3D's kernel each pixel may carry a weight
(confidence) instead of 1, so confidence weighting needs no second pass.

Blocks are processed in chunks that stay in the CPU cache; on 8^3 blocks this
takes about half the CPU time of Open3D 0.20's CPU kernel (6 vs 12.5 ms for
1024 blocks, one thread). Works on the zero-copy numpy views of a CPU
:class:`~depth_nodes.mapping.voxel_store.VoxelStore`.

Block culling (``cull=True``, the default) gives bit-identical results with
less work: the eight corner samples of each block bound its image rectangle
and depth range, and bounds on the depth image over that rectangle
(:class:`~depth_nodes.mapping.range_table.RangeExtrema`) show blocks that no
voxel of which can be updated (all behind the surface band, out of view or
over holes: skipped) and blocks whose every voxel sees a valid pixel at least
``sdf_trunc`` behind it (free space: every voxel takes the same update
``tsdf -> (w tsdf + 1) / (w + 1)``, done without projecting). Only the other
blocks go through the per-voxel projection.
"""
from __future__ import annotations

import numpy as np

from depth_nodes.mapping.blocks import voxel_points
from depth_nodes.mapping.range_table import RangeExtrema

#: Blocks per chunk: 32 blocks of 8^3 voxels keep every float32 temporary at 64 kB.
_CHUNK_VOXELS = 32 * 512
#: Culling margins, far above float32 rounding of the kernel: pixels, and sdf_trunc units.
_PIXEL_MARGIN = 0.01
_SDF_MARGIN = 1e-3
#: Blocks closer to the camera plane than this (sdf_trunc units) always take the per-voxel path.
_Z_MIN = 0.01
#: Block classes.
_SKIP, _FREE, _MIXED = 0, 1, 2


class BlockIntegrator:
    """Integrates depth frames into the blocks of a grid with ``res**3``-voxel
    blocks of edge ``res * voxel_size`` metres (world frame ``map``)."""

    def __init__(self, res: int, voxel_size: float, cull: bool = True):
        self.res = int(res)
        self.voxel_size = float(voxel_size)
        self.cull = bool(cull)
        # offsets of a block's voxel samples from its first sample, storage order (x fastest)
        self._local = voxel_points(np.zeros((1, 3), np.int64), self.res, self.voxel_size)
        e = (self.res - 1) * self.voxel_size
        self._corners = np.array([[x, y, z] for x in (0.0, e) for y in (0.0, e) for z in (0.0, e)])
        self._chunk = max(1, _CHUNK_VOXELS // self.res ** 3)
        #: blocks per class (skipped, free, per-voxel) in the last ``integrate`` call
        self.last_counts = (0, 0, 0)

    def integrate(self, views: dict[str, np.ndarray], keys: np.ndarray, buf: np.ndarray, depth: np.ndarray,
                  K: np.ndarray, T_cam_world: np.ndarray, sdf_trunc: float,
                  weight: np.ndarray | None = None, color: np.ndarray | None = None) -> None:
        """Fuse one frame into the blocks ``keys`` (N, 3) stored at buffer rows ``buf`` (N,).

        ``views``: ``"tsdf"`` and ``"weight"`` (capacity, res**3) float32 arrays
        (and ``"color"`` (capacity, res**3, 3) when ``color`` is given), updated in
        place. ``depth``: (H, W) float32 metres, 0 = no return (already limited
        to the integration range). ``K``: 3x3 intrinsics; ``T_cam_world``: 4x4
        pose mapping ``map`` points into the optical frame. ``weight``: optional
        (H, W) per-pixel observation weight (default 1); ``color``: optional
        (H, W, 3) float32 colour in the units stored (Open3D keeps 0..255).
        """
        h, w = depth.shape
        # Everything is in units of sdf_trunc, and pixel coordinates are shifted by +1 so that
        # truncation maps u in [-1, 0) to column 0; the padded images hold pixel (r, c) at
        # (r + 1, c + 1) and "no return" (-inf depth) in row/column 0 and row/column h/w:
        # like Open3D, samples need 0 <= u < w - 1 and 0 <= v < h - 1.
        inv_trunc = 1.0 / float(sdf_trunc)
        d_pad = self._pad(np.where(depth > 0, depth * np.float32(inv_trunc), np.float32(-np.inf)), -np.inf)
        w_pad = None if weight is None else self._pad(weight, 0.0)
        c_pad = None if color is None else self._pad(color, 0.0).reshape(-1, 3)
        K1 = K + np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
        P = K1 @ T_cam_world[:3, :3] * inv_trunc
        local = (self._local @ P.T).astype(np.float32).T.copy()  # (3, res**3)
        p0 = K1 @ T_cam_world[:3, 3] * inv_trunc
        origin = (np.asarray(keys, np.float64) * (self.res * self.voxel_size)) @ P.T + p0
        tsdf_v, weight_v = views["tsdf"], views["weight"]
        color_v = views.get("color") if color is not None else None
        buf = np.asarray(buf)
        if self.cull and len(keys):
            cls = self._classify(origin, P, d_pad, uniform=weight is None and color is None)
            self.last_counts = tuple(int(n) for n in np.bincount(cls, minlength=3))
            _free_update(buf[cls == _FREE], tsdf_v, weight_v, self._chunk)
            origin, buf = origin[cls == _MIXED], buf[cls == _MIXED]
        else:
            self.last_counts = (0, 0, len(keys))
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # -inf depth, 0 / 0 unobserved
            for s in range(0, len(buf), self._chunk):
                self._chunk_update(origin[s:s + self._chunk].astype(np.float32), buf[s:s + self._chunk], local,
                                   d_pad.ravel(), w_pad, c_pad, tsdf_v, weight_v, color_v, h, w)

    def _classify(self, origin: np.ndarray, P: np.ndarray, d_pad: np.ndarray, uniform: bool) -> np.ndarray:
        """(N,) int8 class of each block (``_SKIP``, ``_FREE`` or ``_MIXED``) from its
        corners' projective coordinates ``origin + P @ corner`` (pixels shifted by +1,
        depths in sdf_trunc units, as the kernel computes them) and bounds on the
        padded depth image ``d_pad`` over the block's pixel rectangle. ``_FREE``
        only when ``uniform`` (unit pixel weights and no colour)."""
        c = origin[:, None, :] + (self._corners @ P.T)[None]  # (N, 8, 3)
        z = c[..., 2]
        zmin, zmax = z.min(axis=1), z.max(axis=1)
        cls = np.full(len(origin), _MIXED, np.int8)
        cls[zmax < -_SDF_MARGIN] = _SKIP  # wholly behind the camera
        front = np.flatnonzero(zmin > _Z_MIN)
        if len(front) == 0:
            return cls
        cf = c[front]
        u, v = cf[..., 0] / cf[..., 2], cf[..., 1] / cf[..., 2]
        hp, wp = d_pad.shape  # the kernel clips columns to [0, W] and rows to [0, H]

        def span(a: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
            lo, hi = a.min(axis=1), a.max(axis=1)
            lo = lo - (_PIXEL_MARGIN + 1e-6 * np.abs(lo))
            hi = hi + (_PIXEL_MARGIN + 1e-6 * np.abs(hi))
            return (np.clip(np.floor(lo), 0, n - 1).astype(np.int64),
                    np.clip(np.floor(hi), 0, n - 1).astype(np.int64))

        c0, c1 = span(u, wp)
        r0, r1 = span(v, hp)
        dmin, dmax = RangeExtrema(d_pad).query(r0, r1, c0, c1)
        zmin, zmax = zmin[front], zmax[front]
        with np.errstate(invalid="ignore"):  # -inf - -inf cannot occur (z is finite); keep numpy quiet
            skip = dmax - zmin < -1.0 - _SDF_MARGIN  # every sample is farther than the band (or over holes)
            free = (dmin - zmax >= 1.0 + _SDF_MARGIN) if uniform else np.zeros(len(front), bool)
        cls[front[skip]] = _SKIP
        cls[front[free & ~skip]] = _FREE
        return cls

    @staticmethod
    def _chunk_update(o, rows, local, d_flat, w_pad, c_pad, tsdf_v, weight_v, color_v, h, w) -> None:
        """Update the blocks at buffer ``rows`` whose first samples project to ``o`` (n, 3)."""
        z = o[:, 2:3] + local[2]
        ui = ((o[:, 0:1] + local[0]) / z).astype(np.int32)  # NaN/inf casts are clipped away below
        vi = ((o[:, 1:2] + local[1]) / z).astype(np.int32)
        np.clip(ui, 0, w, out=ui)
        np.clip(vi, 0, h, out=vi)
        vi *= w + 1
        vi += ui
        if z.min() <= 0:  # samples behind the camera project through it: no observation
            vi[z <= 0] = 0
        sdf = np.take(d_flat, vi)  # np.take: about 3x faster than fancy indexing
        sdf -= z
        upd = sdf >= -1.0
        np.minimum(sdf, np.float32(1.0), out=sdf)
        w_old = np.take(weight_v, rows, axis=0)
        t_old = np.take(tsdf_v, rows, axis=0)
        if w_pad is None:
            obs = upd
            num = w_old * t_old + sdf
        else:
            obs = np.where(upd, np.take(w_pad.ravel(), vi), np.float32(0.0))
            upd &= obs > 0
            num = w_old * t_old + obs * sdf
        w_new = np.add(w_old, obs, dtype=np.float32)
        tsdf_v[rows] = np.where(upd, num / w_new, t_old)
        if color_v is not None:
            c_old = np.take(color_v, rows, axis=0)
            c_new = (w_old[..., None] * c_old + obs[..., None] * np.take(c_pad, vi, axis=0)) / w_new[..., None]
            color_v[rows] = np.where(upd[..., None], c_new, c_old)
        weight_v[rows] = w_new

    @staticmethod
    def _pad(img: np.ndarray, fill: float) -> np.ndarray:
        """(H + 1, W + 1[, C]) float32: ``fill`` in row/column 0 and in the last
        row/column (image pixel (r, c) at (r + 1, c + 1); its last row/column drop out)."""
        h, w = img.shape[:2]
        out = np.full((h + 1, w + 1) + img.shape[2:], fill, np.float32)
        out[1:h, 1:w] = img[:h - 1, :w - 1]
        return out


def _free_update(rows: np.ndarray, tsdf_v: np.ndarray, weight_v: np.ndarray, chunk: int) -> None:
    """The kernel's update for blocks whose every voxel is observed as free with
    unit weight: ``tsdf -> (w tsdf + 1) / (w + 1)``, ``w -> w + 1`` (same float32
    operations, so the result is bit-identical)."""
    for s in range(0, len(rows), chunk):
        r = rows[s:s + chunk]
        w_old = np.take(weight_v, r, axis=0)
        w_new = w_old + np.float32(1.0)
        tsdf_v[r] = (w_old * np.take(tsdf_v, r, axis=0) + np.float32(1.0)) / w_new
        weight_v[r] = w_new
