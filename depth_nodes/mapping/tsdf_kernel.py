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

``occupancy_fill`` and ``bounded_edt``: the occupancy grid of
:meth:`~depth_nodes.mapping.tsdf.TsdfMap.occupancy_window`, filled straight
from the block buffers, and the exact bounded distance transform of
:func:`depth_nodes.mapping.esdf.bounded_edt` (the same arrays as their numpy
references; about 4x and 5x less CPU on a 161 x 161 x 61 window).

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


@numba.njit(cache=True, nogil=True)
def occupancy_fill(keys, rows, tsdf, weight, hits, lo, res, hit_ratio, occupied, known):  # pragma: no cover - compiled
    """Fill the dense (nz, ny, nx) bool grids ``occupied`` / ``known`` (zeroed, C order,
    voxel ``lo + (x, y, z)`` at ``[z, y, x]``) from the blocks ``keys`` (M, 3) int32 whose
    voxels (z-y-x, ``res**3``) are the rows ``rows`` (M,) of the (capacity, res**3) float32
    ``tsdf`` / ``weight`` / ``hits``; blocks outside the window are skipped. The rule of
    :meth:`~depth_nodes.mapping.tsdf.TsdfMap.occupancy_window` in float32 (``hit_ratio``
    float32): known = ``w > 0 or h > 0``, occupied = ``(w > 0 and t <= 0) or (h > 0 and
    h >= hit_ratio * w)``.

    Per block, a vectorised loop classifies all its voxels; the rows inside the window are
    then copied out (unsigned flat indices: no negative-index handling in the copy loop).
    """
    nz, ny, nx = occupied.shape
    occ_flat, known_flat = occupied.ravel(), known.ravel()
    n_vox = tsdf.shape[1]
    occ_block = np.empty(n_vox, np.bool_)
    known_block = np.empty(n_vox, np.bool_)
    for b in range(len(rows)):
        x0, y0, z0 = keys[b, 0] * res - lo[0], keys[b, 1] * res - lo[1], keys[b, 2] * res - lo[2]
        xa, ya, za = max(x0, 0), max(y0, 0), max(z0, 0)
        xb, yb, zb = min(x0 + res, nx), min(y0 + res, ny), min(z0 + res, nz)
        if xa >= xb or ya >= yb or za >= zb:
            continue
        t_row, w_row, h_row = tsdf[rows[b]], weight[rows[b]], hits[rows[b]]
        for k in range(n_vox):
            t, w, h = t_row[k], w_row[k], h_row[k]
            seen, hit = w > _ZERO, h > _ZERO
            occ_block[k] = (seen & (t <= _ZERO)) | (hit & (h >= hit_ratio * w))
            known_block[k] = seen | hit
        for z in range(za, zb):
            for y in range(ya, yb):
                src = np.uint64(((z - z0) * res + y - y0) * res - x0)
                dst = np.uint64((z * ny + y) * nx)
                for x in range(np.uint64(xa), np.uint64(xb)):
                    occ_flat[dst + x] = occ_block[src + x]
                    known_flat[dst + x] = known_block[src + x]


# The EDT helpers below loop over whole 1-D arrays with ``range(size)`` indices and narrow
# every result to the array dtype: that is what LLVM vectorises (2-D indexing, slice
# assignment and int64 intermediates run several times slower).
@numba.njit(cache=True, nogil=True)
def _copy(out, src):  # pragma: no cover - compiled
    """``out[:] = src`` for 1-D arrays of one size."""
    for j in range(out.size):
        out[j] = src[j]


@numba.njit(cache=True, nogil=True)
def _min_plus(out, src, add):  # pragma: no cover - compiled
    """``out = min(out, src + add)`` elementwise on 1-D arrays of one unsigned dtype (the sum
    must fit it)."""
    narrow = out.dtype.type
    for j in range(out.size):
        out[j] = min(out[j], narrow(src[j] + add))


@numba.njit(cache=True, nogil=True)
def bounded_edt(occupied, max_voxels, out):  # pragma: no cover - compiled
    """Squared Euclidean distance (voxels^2) to the nearest True voxel of the C-order
    (nz, ny, nx) bool ``occupied``, exact up to ``max_voxels`` (D) and ``(D + 1)**2``
    beyond, written to ``out`` (same shape, an unsigned dtype that holds ``(D + 1)**2 + D**2``).

    Per z-slab, the 1-D distance along x (capped at D + 1) by doubling shifts (exact up to
    ``2 s - 1`` after shifts 1, 2, .., s), squared; then ``f -> min over |k| <= D of
    f(. + k) + k^2`` along y, and per plane along z; every candidate is a true squared
    distance, so the result is exact. Every step runs over a whole flat slab or plane:
    rows are padded with D samples that hold no obstacle, so that shifts along x never mix
    rows (a distance through the padding exceeds D). Slabs without an obstacle are skipped.
    """
    nz, ny, nx = occupied.shape
    narrow = out.dtype.type
    far, cap = narrow(max_voxels + 1), narrow((max_voxels + 1) ** 2)
    stride = nx + max_voxels
    a = np.empty(ny * stride, out.dtype)
    b = np.empty_like(a)
    along_xy = np.empty((nz, ny * stride), out.dtype)
    live = np.zeros(nz, np.bool_)  # slab holds an occupied voxel (else it is all cap)
    m = a.size
    for z in range(nz):
        xy = along_xy[z]
        for j in range(m):
            a[j] = far
        for y in range(ny):
            line, row = occupied[z, y], a[y * stride:y * stride + nx]
            hit = False
            for x in range(nx):
                row[x] = narrow(0) if line[x] else far
                hit |= line[x]
            live[z] |= hit
        if not live[z]:
            for j in range(m):
                xy[j] = cap
            continue
        s = 1
        while s <= max_voxels and s < nx:
            _copy(b, a)
            _min_plus(b[:m - s], a[s:], narrow(s))
            _min_plus(b[s:], a[:m - s], narrow(s))
            a, b = b, a
            s *= 2
        for j in range(m):
            d = min(a[j], far)
            a[j] = narrow(d * d)
        _copy(xy, a)
        for k in range(1, min(max_voxels, ny - 1) + 1):
            sh = k * stride
            _min_plus(xy[:m - sh], a[sh:], narrow(k * k))
            _min_plus(xy[sh:], a[:m - sh], narrow(k * k))
    for z in range(nz):
        _copy(a, along_xy[z])
        for k in range(1, min(max_voxels, nz - 1) + 1):  # all-cap slabs cannot lower anything
            if z + k < nz and live[z + k]:
                _min_plus(a, along_xy[z + k], narrow(k * k))
            if z - k >= 0 and live[z - k]:
                _min_plus(a, along_xy[z - k], narrow(k * k))
        for y in range(ny):
            _copy(out[z, y], a[y * stride:y * stride + nx])
    return out
