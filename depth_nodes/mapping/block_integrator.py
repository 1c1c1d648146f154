"""Projective TSDF update of whole voxel blocks on CPU (compiled, or numpy).

The update is the one of Open3D's ``VoxelBlockGrid.integrate`` (0.20): every
voxel sample of the given blocks is projected into the depth image, the pixel
is chosen by truncating ``(u, v)`` (samples with ``u`` outside ``[0, W - 1]``
or ``v`` outside ``[0, H - 1]`` or behind the camera are skipped), and where
the pixel holds a depth ``D > 0`` with ``sdf = D - z >= -sdf_trunc`` the voxel
takes the running average of ``min(sdf, sdf_trunc) / sdf_trunc`` (and of the
pixel colour). Unlike Open3D's kernel each pixel may carry a weight
(confidence) instead of 1, so confidence weighting needs no second pass.
Works on the zero-copy numpy views of a CPU
:class:`~depth_nodes.mapping.voxel_store.VoxelStore`.

Two kernels give bit-identical maps (``kernel=``): ``"numba"`` (the default
when numba is installed; :mod:`depth_nodes.mapping.tsdf_kernel`) and the numpy
reference ``"numpy"``, which processes blocks in chunks that stay in the CPU
cache. On 8^3 blocks, one thread, the surface blocks of a 320x240 frame (about
1000) take ~1 ms compiled, ~6 ms in numpy and ~12 ms in Open3D 0.20's CPU kernel.

Block culling gives bit-identical results with less per-voxel work: the eight
corner samples of each block bound its image rectangle and depth range, and
bounds on the depth image over that rectangle
(:class:`~depth_nodes.mapping.range_table.RangeExtrema`) show blocks that no
voxel of which can be updated (all behind the surface band, out of view or
over holes: skipped) and blocks whose every voxel sees a valid pixel at least
``sdf_trunc`` behind it (free space: every voxel takes the same update
``tsdf -> (w tsdf + 1) / (w + 1)``, done without projecting). It pays off for
the numpy kernel only (its default there); the compiled kernel updates a block
in about the time culling takes to classify it. The blocks left go through
the per-voxel projection in ranges spread over ``threads`` threads (numpy and
the compiled kernel release the GIL; default ``OMP_NUM_THREADS``, like Open3D's
kernels, else the CPU count).
"""
from __future__ import annotations

import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from depth_nodes.mapping.blocks import voxel_points
from depth_nodes.mapping.range_table import RangeExtrema

try:
    from depth_nodes.mapping import tsdf_kernel
except ImportError:  # numba missing: the numpy kernel does the work
    tsdf_kernel = None

#: Blocks per chunk: 32 blocks of 8^3 voxels keep every float32 temporary at 64 kB.
_CHUNK_VOXELS = 32 * 512
#: Voxels per call of the compiled kernel (threads take such ranges in turn).
_COMPILED_CHUNK_VOXELS = 64 * 512
#: Kernel choices.
KERNELS = ("auto", "numba", "numpy")
#: Culling margins, far above float32 rounding of the kernel: pixels, and sdf_trunc units.
_PIXEL_MARGIN = 0.01
_SDF_MARGIN = 1e-3
#: Blocks closer to the camera plane than this (sdf_trunc units) always take the per-voxel path.
_Z_MIN = 0.01
#: Block classes.
_SKIP, _FREE, _MIXED = 0, 1, 2
#: Most kernel threads by default.
_MAX_THREADS = 8
#: (1, 1, 3) stand-in for absent colour arrays of the compiled kernel.
_NO_COLOR = np.zeros((1, 1, 3), np.float32)
_pool: tuple[ThreadPoolExecutor, int, int] | None = None  # (pool, its thread count, owning process id)
_pool_lock = threading.Lock()


def default_threads() -> int:
    """Kernel threads: ``OMP_NUM_THREADS`` when set (as for Open3D's own kernels), else the CPU count (<= 8)."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    n = int(env) if env.strip().isdigit() and int(env) > 0 else (os.cpu_count() or 1)
    return max(1, min(n, _MAX_THREADS))


def shared_executor(workers: int) -> ThreadPoolExecutor:
    """The process-wide pool of the mapping layer's CPU threads, with at least ``workers``
    threads (numpy releases the GIL in the kernel's passes). A forked child process gets a
    pool of its own (the parent's threads do not exist there)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[1] < workers or _pool[2] != os.getpid():
            _pool = (ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tsdf-kernel"), workers, os.getpid())
        return _pool[0]


class BlockIntegrator:
    """Integrates depth frames into the blocks of a grid with ``res**3``-voxel
    blocks of edge ``res * voxel_size`` metres (world frame ``map``)."""

    def __init__(self, res: int, voxel_size: float, cull: bool | None = None, threads: int | None = None,
                 kernel: str = "auto"):
        self.res = int(res)
        self.voxel_size = float(voxel_size)
        self.threads = default_threads() if threads is None else int(threads)
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads!r}")
        #: per-voxel kernel: ``"numba"`` (compiled) or ``"numpy"`` (the reference); same results
        self.kernel = resolve_kernel(kernel)
        #: block culling (default: with the numpy kernel only; the compiled one is faster without)
        self.cull = self.kernel == "numpy" if cull is None else bool(cull)
        # offsets of a block's voxel samples from its first sample, storage order (x fastest)
        self._local = voxel_points(np.zeros((1, 3), np.int64), self.res, self.voxel_size)
        self._corners = _box_corners((self.res - 1) * self.voxel_size)
        self._chunk = max(1, _CHUNK_VOXELS // self.res ** 3)
        #: blocks (skipped, updated as free without projection, projected) in the last ``integrate``
        self.last_counts = (0, 0, 0)

    def integrate(self, views: dict[str, np.ndarray], keys: np.ndarray, buf: np.ndarray, depth: np.ndarray,
                  K: np.ndarray, T_cam_world: np.ndarray, sdf_trunc: float,
                  weight: np.ndarray | None = None, color: np.ndarray | None = None,
                  cull: bool = True) -> None:
        """Fuse one frame into the blocks ``keys`` (N, 3) stored at buffer rows ``buf`` (N,).

        ``views``: ``"tsdf"`` and ``"weight"`` (capacity, res**3) float32 arrays
        (and ``"color"`` (capacity, res**3, 3) when ``color`` is given), updated in
        place. ``depth``: (H, W) float32 metres, 0 = no return (already limited
        to the integration range). ``K``: 3x3 intrinsics; ``T_cam_world``: 4x4
        pose mapping ``map`` points into the optical frame. ``weight``: optional
        (H, W) per-pixel observation weight (default 1); ``color``: optional
        (H, W, 3) float32 colour in the units stored (Open3D keeps 0..255).
        ``cull=False`` skips block culling this call (when few blocks lie in free
        space it costs more than it saves); the result is the same either way.
        """
        # Everything is in units of sdf_trunc, and pixel coordinates are shifted by +1 so that
        # truncation maps u in [-1, 0) to column 0; the padded images hold pixel (r, c) at
        # (r + 1, c + 1) and "no return" (-inf depth) in row/column 0 and row/column h/w:
        # like Open3D, samples need 0 <= u < w - 1 and 0 <= v < h - 1.
        inv_trunc = 1.0 / float(sdf_trunc)
        d_pad = self._pad(np.where(depth > 0, depth * np.float32(inv_trunc), np.float32(-np.inf)), -np.inf)
        w_pad = None if weight is None else self._pad(weight, 0.0)
        c_pad = None if color is None else self._pad(color, 0.0)
        K1 = K + np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
        P = K1 @ T_cam_world[:3, :3] * inv_trunc
        local = (self._local @ P.T).astype(np.float32).T.copy()  # (3, res**3)
        p0 = K1 @ T_cam_world[:3, 3] * inv_trunc
        origin = (np.asarray(keys, np.float64) * (self.res * self.voxel_size)) @ P.T + p0
        rows = np.asarray(buf, dtype=np.int64)
        corners = self._corners @ P.T  # (8, 3) projective offsets of a block's corner samples
        views = {name: views[name] for name in (("tsdf", "weight", "color") if color is not None
                                                  else ("tsdf", "weight"))}
        compiled = self.kernel == "numba"
        if self.cull and cull and len(rows):
            cls = self._classify(origin, corners, RangeExtrema(d_pad), weight is None and color is None)
            self.last_counts = tuple(int(n) for n in np.bincount(cls, minlength=3))
            free = rows[cls == _FREE]
            if compiled:
                tsdf_kernel.free_update(free, views["tsdf"], views["weight"])
            else:
                _free_update(free, views["tsdf"], views["weight"], self._chunk)
            origin, rows = origin[cls == _MIXED], rows[cls == _MIXED]
        else:
            self.last_counts = (0, 0, len(rows))
        update = self._update_compiled if compiled else self._update_numpy
        update(origin, rows, local, corners, views, d_pad, w_pad, c_pad)

    def _update_numpy(self, origin: np.ndarray, rows: np.ndarray, local: np.ndarray, corners: np.ndarray,
                      views: dict[str, np.ndarray], d_pad: np.ndarray, w_pad: np.ndarray | None,
                      c_pad: np.ndarray | None) -> None:
        """The numpy per-voxel kernel over the blocks ``rows`` whose first samples project to
        ``origin`` (N, 3), in cache-sized chunks."""
        # blocks with a corner sample at or behind the camera plane need the per-voxel check
        near = origin[:, 2] + corners[:, 2].min() <= _Z_MIN
        o32 = origin.astype(np.float32)
        h, w = d_pad.shape[0] - 1, d_pad.shape[1] - 1
        images = (d_pad.ravel(), w_pad, None if c_pad is None else c_pad.reshape(-1, 3), h, w)

        def chunk(sl: slice) -> None:
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # -inf depth, 0 / 0 unobserved
                self._chunk_update(o32[sl], rows[sl], bool(near[sl].any()), local, *images,
                                   views["tsdf"], views["weight"], views.get("color"))

        self._spread(len(rows), self._chunk, chunk)

    def _update_compiled(self, origin: np.ndarray, rows: np.ndarray, local: np.ndarray, corners: np.ndarray,
                         views: dict[str, np.ndarray], d_pad: np.ndarray, w_pad: np.ndarray | None,
                         c_pad: np.ndarray | None) -> None:
        """The compiled per-voxel kernel (same arguments as :meth:`_update_numpy`; it needs no
        near-plane flags): unused image arrays are passed as stand-ins."""
        color_v = views.get("color")
        args = (origin.astype(np.float32), rows, local, d_pad, d_pad if w_pad is None else w_pad,
                _NO_COLOR if c_pad is None else c_pad,
                views["tsdf"], views["weight"], _NO_COLOR if color_v is None else color_v,
                w_pad is not None, c_pad is not None)
        step = max(1, _COMPILED_CHUNK_VOXELS // self.res ** 3)
        self._spread(len(rows), step, lambda sl: tsdf_kernel.update_blocks(*args, sl.start, min(sl.stop, len(rows))))

    def _spread(self, n_blocks: int, step: int, chunk) -> None:
        """Call ``chunk(slice)`` on consecutive ``step``-block slices of ``n_blocks`` blocks, which
        up to ``threads`` threads take in turn (a thread busy with other work of the shared pool
        leaves its share to the others); blocks are disjoint, so the result does not depend
        on the threads."""
        n_chunks = -(-n_blocks // step)
        ticket = itertools.count()  # next() on it is atomic under the GIL

        def work() -> None:
            while (i := next(ticket)) < n_chunks:
                chunk(slice(i * step, (i + 1) * step))

        n = min(self.threads, n_chunks)
        futures = [shared_executor(n - 1).submit(work) for _ in range(n - 1)]
        work()
        for f in futures:
            f.result()

    @staticmethod
    def _classify(origin: np.ndarray, corners: np.ndarray, ext: RangeExtrema, uniform: bool) -> np.ndarray:
        """(N,) int8 class (``_SKIP``, ``_FREE`` or ``_MIXED``) of blocks from the projective
        coordinates ``origin + corner`` of their 8 corner samples (``corners`` (8, 3) relative;
        pixels shifted by +1 and depths in sdf_trunc units, as the kernel computes them) and
        bounds on the padded depth image ``ext`` over each block's pixel rectangle.
        ``_FREE`` only when ``uniform`` (unit pixel weights and no colour)."""
        z = corners[:, 2:3] + origin[:, 2]  # (8, N): reductions over the first axis are fast
        zmin, zmax = z.min(axis=0), z.max(axis=0)
        cls = np.full(len(origin), _MIXED, np.int8)
        cls[zmax < -_SDF_MARGIN] = _SKIP  # wholly behind the camera
        front = np.flatnonzero(zmin > _Z_MIN)
        if len(front) == 0:
            return cls
        of, zf = origin[front], z[:, front]
        hp, wp = ext.shape  # the kernel clips columns to [0, W] and rows to [0, H]
        r0, r1 = _pixel_span((corners[:, 1:2] + of[:, 1]) / zf, hp)
        c0, c1 = _pixel_span((corners[:, 0:1] + of[:, 0]) / zf, wp)
        dmin, dmax = ext.query(r0, r1, c0, c1)
        zmin, zmax = zmin[front], zmax[front]
        skip = dmax - zmin < -1.0 - _SDF_MARGIN  # every sample is beyond the band (or over holes)
        cls[front[skip]] = _SKIP
        if uniform:
            cls[front[(dmin - zmax >= 1.0 + _SDF_MARGIN) & ~skip]] = _FREE
        return cls

    @staticmethod
    def _chunk_update(o, rows, near, local, d_flat, w_pad, c_pad, h, w, tsdf_v, weight_v, color_v) -> None:
        """Update the blocks at buffer ``rows`` whose first samples project to ``o`` (n, 3);
        ``near``: some sample may lie at or behind the camera plane."""
        z = o[:, 2:3] + local[2]
        ui = ((o[:, 0:1] + local[0]) / z).astype(np.int32)  # NaN/inf casts are clipped away below
        vi = ((o[:, 1:2] + local[1]) / z).astype(np.int32)
        np.clip(ui, 0, w, out=ui)
        np.clip(vi, 0, h, out=vi)
        vi *= w + 1
        vi += ui
        if near:  # samples behind the camera project through it: no observation
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


def resolve_kernel(kernel: str) -> str:
    """``"numba"`` or ``"numpy"`` for a requested kernel (``"auto"``: numba when it is
    installed and its JIT is not disabled)."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    available = tsdf_kernel is not None and not tsdf_kernel.numba.config.DISABLE_JIT
    if kernel == "numba" and not available:
        raise ValueError("kernel='numba' requested but numba is not installed (or NUMBA_DISABLE_JIT is set)")
    return "numba" if kernel == "numba" or (kernel == "auto" and available) else "numpy"


def _box_corners(edge: float) -> np.ndarray:
    """(8, 3) corners of the cube [0, edge]^3 (metres)."""
    return np.array([[x, y, z] for x in (0.0, edge) for y in (0.0, edge) for z in (0.0, edge)])


def _pixel_span(a: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive range of ``clip(trunc(a), 0, n - 1)`` over each column of ``a`` (8, N)
    (the kernel's pixel choice), widened by a margin for float32 rounding."""
    lo, hi = a.min(axis=0), a.max(axis=0)
    lo = lo - (_PIXEL_MARGIN + 1e-6 * np.abs(lo))
    hi = hi + (_PIXEL_MARGIN + 1e-6 * np.abs(hi))
    return (np.clip(np.floor(lo), 0, n - 1).astype(np.int64),
            np.clip(np.floor(hi), 0, n - 1).astype(np.int64))


def _free_update(rows: np.ndarray, tsdf_v: np.ndarray, weight_v: np.ndarray, chunk: int) -> None:
    """The kernel's update for blocks whose voxels are all observed as free with unit
    weight: ``tsdf -> (w tsdf + 1) / (w + 1)``, ``w -> w + 1`` (the kernel's float32
    operations, so the result is bit-identical)."""
    for s in range(0, len(rows), chunk):
        r = rows[s:s + chunk]
        w_old = np.take(weight_v, r, axis=0)
        w_new = w_old + np.float32(1.0)
        tsdf_v[r] = (w_old * np.take(tsdf_v, r, axis=0) + np.float32(1.0)) / w_new
        weight_v[r] = w_new
