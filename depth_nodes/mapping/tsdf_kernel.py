"""Compiled (numba) CPU kernels of the TSDF map.

``update_blocks`` / ``free_update``: the per-voxel update of
:mod:`depth_nodes.mapping.block_integrator`. They compute what the numpy
reference ``BlockIntegrator._chunk_update`` computes, with the same float32
operations in the same order (every intermediate stays float32: constants
are ``np.float32``, no fused multiply-add, no fastmath), so the map is
bit-identical to the reference: a few loops per block (most of them
vectorised) instead of ~20 numpy passes per chunk of blocks. Coordinates are
those of the block integrator: projective, in units of ``sdf_trunc``, pixel
coordinates shifted by +1 (see ``BlockIntegrator.integrate``); ``d_pad`` is
the padded depth image (sdf_trunc units, ``-inf`` for no return).

``saturated_free``, ``ray_block_keys`` and ``endpoint_voxels``: the carving
and hit-count steps of :class:`~depth_nodes.mapping.tsdf.TsdfMap`, with the
float64 arithmetic of their numpy versions (same keys and voxels), without
their large temporaries.

Every kernel releases the GIL, so threads of a pool can run them at once
(on disjoint blocks). Importing this module raises ImportError without numba.
"""
from __future__ import annotations

import numba
import numpy as np

from depth_nodes.mapping.blocks import KEY_LIMIT

_KEY_LIMIT = np.int64(KEY_LIMIT)
_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)
_MINUS_ONE = np.float32(-1.0)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _observe(d, z, w_pix, weighted):  # pragma: no cover - compiled
    """(update?, clipped sdf, observation weight) of a sample at depth ``z`` seeing pixel depth ``d``
    and pixel weight ``w_pix`` (used when ``weighted``; else the weight is 1); sdf_trunc units."""
    sdf = d - z
    upd = sdf >= _MINUS_ONE  # False beyond the band and for no return (-inf)
    sdf = min(sdf, _ONE)
    if weighted:
        obs = w_pix if upd else _ZERO
        upd = upd & (obs > _ZERO)
    else:
        obs = _ONE if upd else _ZERO
    return upd, sdf, obs


@numba.njit(cache=True, nogil=True, error_model="numpy")
def update_blocks(origin, rows, local, d_pad, w_pad, c_pad, tsdf, weight, color,
                  weighted, colored, start, stop):  # pragma: no cover - compiled
    """Per-voxel update of blocks ``start..stop-1``.

    ``origin`` (N, 3) float32 projective coordinates of each block's first
    sample; ``rows`` (N,) int64 buffer rows; ``local`` (3, V) float32 sample
    offsets; ``d_pad`` / ``w_pad`` (H + 1, W + 1) float32 padded depth / pixel
    weight; ``c_pad`` (H + 1, W + 1, 3) padded colour; ``tsdf`` / ``weight``
    (capacity, V) and ``color`` (capacity, V, 3) float32, updated in place.
    ``w_pad`` is read only when ``weighted``, ``c_pad`` / ``color`` only when
    ``colored`` (pass any float32 arrays of the right rank otherwise).

    Per block: a vectorised loop projects every sample to its flat pixel
    index, or to index 0 (padding: no return) when it lies behind the camera
    or outside ``[1, W) x [1, H)`` (what the reference's truncation and
    clipping select); a scalar loop gathers the pixels; a vectorised loop
    updates the voxels (every voxel is written, as in the reference).
    """
    hp, wp = d_pad.shape
    d_flat = d_pad.ravel()
    w_flat = w_pad.ravel()
    c_flat = c_pad.reshape(-1, 3)
    u_end, v_end = np.float32(wp - 1), np.float32(hp - 1)
    n_vox = local.shape[1]
    pix = np.empty(n_vox, np.int64)
    d_pix = np.empty(n_vox, np.float32)
    w_pix = np.ones(n_vox, np.float32)
    for b in range(start, stop):
        ox, oy, oz = origin[b, 0], origin[b, 1], origin[b, 2]
        for k in range(n_vox):
            z = oz + local[2, k]
            u = (ox + local[0, k]) / z
            v = (oy + local[1, k]) / z
            seen = (z > _ZERO) & (u >= _ONE) & (u < u_end) & (v >= _ONE) & (v < v_end)
            pix[k] = np.int64(v) * wp + np.int64(u) if seen else 0
        for k in range(n_vox):
            d_pix[k] = d_flat[pix[k]]
        if weighted:
            for k in range(n_vox):
                w_pix[k] = w_flat[pix[k]]
        r = rows[b]
        t_row, w_row = tsdf[r], weight[r]
        if colored:  # before the weights change
            for k in range(n_vox):
                upd, _, obs = _observe(d_pix[k], oz + local[2, k], w_pix[k], weighted)
                if upd:
                    w_old, w_new = w_row[k], w_row[k] + obs
                    for c in range(3):
                        color[r, k, c] = (w_old * color[r, k, c] + obs * c_flat[pix[k], c]) / w_new
        for k in range(n_vox):
            upd, sdf, obs = _observe(d_pix[k], oz + local[2, k], w_pix[k], weighted)
            w_old, t_old = w_row[k], t_row[k]
            w_new = w_old + obs
            t_new = (w_old * t_old + obs * sdf) / w_new
            t_row[k] = t_new if upd else t_old
            w_row[k] = w_new


@numba.njit(cache=True, nogil=True, error_model="numpy")
def free_update(rows, tsdf, weight):  # pragma: no cover - compiled
    """Every voxel of the blocks ``rows`` observed as free with unit weight:
    ``tsdf -> (w tsdf + 1) / (w + 1)``, ``w -> w + 1`` (float32, as the reference)."""
    n_vox = tsdf.shape[1]
    for r in rows:
        for k in range(n_vox):
            w_old = weight[r, k]
            w_new = w_old + _ONE
            tsdf[r, k] = (w_old * tsdf[r, k] + _ONE) / w_new
            weight[r, k] = w_new


@numba.njit(cache=True, nogil=True)
def saturated_free(rows, tsdf, weight, min_weight, min_tsdf):  # pragma: no cover - compiled
    """(len(rows),) bool: every voxel of the block at each row has ``weight >= min_weight``
    and ``tsdf >= min_tsdf`` (float32 thresholds; NaN fails)."""
    out = np.zeros(len(rows), np.bool_)
    n_vox = tsdf.shape[1]
    for j in range(len(rows)):
        t_row, w_row = tsdf[rows[j]], weight[rows[j]]
        failed = 0
        for k in range(n_vox):  # a count, not an early exit: vectorised
            failed += not (w_row[k] >= min_weight and t_row[k] >= min_tsdf)
        out[j] = failed == 0
    return out


@numba.njit(cache=True, nogil=True)
def _packed_key(x, y, z, A, b):  # pragma: no cover - compiled
    """:func:`depth_nodes.mapping.blocks.pack` of ``floor(A @ (x, y, z) + b)`` (float64, summed left to right)."""
    key = np.int64(0)
    for a in range(3):
        key = (key << 21) | (np.int64(np.floor(A[a, 0] * x + A[a, 1] * y + A[a, 2] * z + b[a])) + _KEY_LIMIT)
    return key


@numba.njit(cache=True, nogil=True)
def ray_block_keys(rx, ry, far, t0, step, n_steps, A, b):  # pragma: no cover - compiled
    """Packed keys (:func:`depth_nodes.mapping.blocks.pack`) of the blocks containing the
    samples ``t = t0 + step * s`` (``s < n_steps``, ``t <= far``) and the end point
    ``max(far, t0)`` of every optical-frame ray ``(rx, ry, 1)`` (float64; ``z = t``),
    mapped by ``floor(A @ p + b)`` (``A``, ``b``: the pose scaled to block units).
    Repeats of the previous key are dropped (samples along a ray share blocks);
    the result still holds duplicates."""
    out = np.empty(len(far) * (n_steps + 1), np.int64)
    m = 0
    for i in range(len(far)):
        s = 0
        while True:
            t = t0 + step * s
            end = s >= n_steps or not t <= far[i]  # samples increase along the ray
            if end:
                t = max(far[i], t0)
            key = _packed_key(rx[i] * t, ry[i] * t, t, A, b)
            if m == 0 or key != out[m - 1]:
                out[m] = key
                m += 1
            if end:
                break
            s += 1
    return out[:m]


@numba.njit(cache=True, nogil=True)
def endpoint_voxels(depth, rx, ry, A, b):  # pragma: no cover - compiled
    """(M, 3) int64 ``rint(A @ p + b)`` (float64, summed left to right) of the optical-frame
    points ``p = depth * (rx, ry, 1)`` of the pixels with ``depth > 0`` (2-D arrays of one
    shape, row-major order), leaving out repeats of the previous voxel."""
    out = np.empty((depth.size, 3), np.int64)
    m = 0
    for i in range(depth.shape[0]):
        for j in range(depth.shape[1]):
            if not depth[i, j] > 0:
                continue
            z = np.float64(depth[i, j])
            x, y = rx[i, j] * z, ry[i, j] * z
            for a in range(3):
                out[m, a] = np.int64(np.rint(A[a, 0] * x + A[a, 1] * y + A[a, 2] * z + b[a]))
            if m == 0 or out[m, 0] != out[m - 1, 0] or out[m, 1] != out[m - 1, 1] or out[m, 2] != out[m - 1, 2]:
                m += 1
    return out[:m]
