"""Truncated signed distance map on Open3D's tensor ``VoxelBlockGrid``.

World frame ``map`` (z up), metres. The grid stores per voxel a normalised
``tsdf`` in [-1, 1] (``sdf / sdf_trunc``), an observation ``weight``, a
``hits`` count (frames with a depth endpoint in the voxel; occupancy for the
ESDF) and optionally an RGB ``color`` (0..255). Voxel ``v`` (integer index)
samples the world point ``v * voxel_size``; blocks of ``block_resolution**3``
voxels are allocated on demand in a hash map keyed by ``floor(v / block_resolution)``:
around surfaces (Open3D) and, with ``carve_free_space``, along the camera
rays in front of them, so observed free space is known.

Integration: the blocks touched by a frame (surface band from Open3D's
``compute_unique_block_coordinates``, plus carved free space every
``carve_every_n_frames``-th frame) are updated by the CPU kernel of
:mod:`depth_nodes.mapping.block_integrator` (Open3D's update rule, compiled
with numba: about a tenth of the CPU time of Open3D 0.20's kernel, on
``OMP_NUM_THREADS`` threads; without numba the numpy reference kernel, which
gives the same map at about half Open3D's time) and by Open3D's kernel on CUDA.
Carving keys, the saturation test and the hit counts use compiled helpers
alongside the compiled kernel (same results as their numpy versions).

Memory: at most ``block_budget`` blocks are allocated (farthest from the
camera dropped first; optional sliding window); Open3D's hash map capacity
may grow to about twice the budget.

Query semantics (``query``): nearest voxel sample (no interpolation), so the
returned value is the distance at a point up to ``voxel_size * sqrt(3) / 2``
from the query. ``sdf`` is the *projective* signed distance (positive in free
space, negative behind surfaces), clipped to ``+-sdf_trunc``. Space that was
never observed is **unknown** (``known=False``, ``sdf=NaN``), never free.

Rejected frames (``integrate``) return ``IntegrationResult(accepted=False,
reason=...)`` and leave the map untouched; only programming errors (wrong
argument types, bad config) raise ``ValueError``.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass

import numpy as np
import open3d as o3d
import open3d.core as o3c

from depth_nodes.camera import PinholeCamera
from depth_nodes.geometry import check_pose, invert_pose
from depth_nodes.mapping import blocks
from depth_nodes.mapping.block_integrator import BlockIntegrator, resolve_kernel, shared_executor, tsdf_kernel
from depth_nodes.mapping.config import TsdfConfig
from depth_nodes.mapping.voxel_store import VoxelStore

log = logging.getLogger(__name__)

_FORMAT_VERSION = 1
#: Observations after which an all-free block is no longer re-carved.
FREE_SATURATION_WEIGHT = 3.0
_cuda_fallback_logged = False


def _resolve_device(name: str) -> o3c.Device:
    """Open3D device for ``name``; CUDA without a GPU falls back to CPU (logged once)."""
    global _cuda_fallback_logged
    if name.startswith("CUDA") and not o3c.cuda.is_available():
        if not _cuda_fallback_logged:
            log.warning("TSDF device %s requested but CUDA is not available: using CPU:0", name)
            _cuda_fallback_logged = True
        return o3c.Device("CPU:0")
    return o3c.Device(name)


@dataclass(frozen=True)
class IntegrationResult:
    """Outcome of :meth:`TsdfMap.integrate`.

    ``reason`` is ``"ok"`` when accepted, else a one-line explanation naming
    the offending input. ``n_valid`` counts depth pixels used; ``time_ms`` is
    the wall time of the call; ``blocks_touched`` the blocks integrated into;
    ``blocks_dropped`` those removed by the budget or the sliding window.
    """

    accepted: bool
    reason: str
    n_valid: int = 0
    time_ms: float = 0.0
    blocks_touched: int = 0
    blocks_dropped: int = 0


class TsdfMap:
    """Sparse TSDF volume with vectorised distance queries (thread-safe).

    >>> m = TsdfMap(TsdfConfig(voxel_size=0.1))
    >>> r = m.integrate(depth, camera, T_world_cam)     # doctest: +SKIP
    >>> sdf, known = m.query(points)                     # doctest: +SKIP
    """

    def __init__(self, config: TsdfConfig | None = None, kernel: str = "auto"):
        """``kernel``: CPU integration kernel, ``"auto"`` (compiled when numba is available),
        ``"numba"`` or ``"numpy"`` (the reference); the map is the same with each."""
        self.config = config if config is not None else TsdfConfig()
        if not isinstance(self.config, TsdfConfig):
            raise ValueError(f"config must be a TsdfConfig, got {type(self.config).__name__}")
        self.device = _resolve_device(self.config.device)
        c = self.config
        self._store = VoxelStore(self._attr_names(), c.voxel_size, c.block_resolution,
                                 min(c.block_budget, 4096), self.device)
        self._vbg = self._store.vbg
        self._res = c.block_resolution
        self._shift = self._store.shift
        self._lock = threading.RLock()
        self._rays_cache: dict = {}
        self._integrator = BlockIntegrator(c.block_resolution, c.voxel_size, kernel=kernel)
        self.frames_integrated = 0
        self.frames_rejected = 0

    # ------------------------------------------------------------------ state
    @property
    def max_distance(self) -> float:
        """``query`` distances saturate at ``sdf_trunc`` (planner ``DistanceField`` contract)."""
        return self.config.sdf_trunc

    @property
    def _mult(self) -> float:
        """Open3D's truncation expressed in voxels."""
        return self.config.sdf_trunc / self.config.voxel_size

    def _attr_names(self) -> list[str]:
        """Voxel attributes: Open3D's tsdf/weight(/color) plus ``hits``, the number
        of frames with a depth endpoint in the voxel (robust occupancy at grazing
        angles, where the projective TSDF can miss the zero crossing)."""
        return ["tsdf", "weight", "hits"] + (["color"] if self.config.integrate_color else [])

    # -------------------------------------------------------------- integrate
    def integrate(self, depth, camera: PinholeCamera, T_world_cam, color=None,
                  confidence=None) -> IntegrationResult:
        """Fuse one depth frame.

        ``depth``: (H, W) float metres z-depth, NaN/0 = no return; ``camera``
        its intrinsics; ``T_world_cam`` the optical-frame pose (4x4, maps
        camera points into ``map``); ``color``: (H, W, 3) uint8 RGB (used when
        ``integrate_color``); ``confidence``: (H, W) float 0..1 (used when
        ``weight_from_confidence``; NaN counts as 0).

        A frame that is mis-sized, has no valid pixel, or a non-finite /
        non-rigid pose is rejected (``accepted=False`` with the reason) and
        the map is not modified.
        """
        if not isinstance(camera, PinholeCamera):
            raise ValueError(f"camera must be a PinholeCamera, got {type(camera).__name__}")
        t0 = time.perf_counter()
        prepared = self._prepare_frame(depth, camera, T_world_cam, color, confidence)
        if isinstance(prepared, str):
            with self._lock:
                self.frames_rejected += 1
            return IntegrationResult(False, prepared, 0, (time.perf_counter() - t0) * 1e3)
        d, T, col, conf, n_valid = prepared
        c = self.config
        T_cw = invert_pose(T)
        ext = o3c.Tensor(T_cw, o3c.float64)
        K = o3c.Tensor(camera.K, o3c.float64)
        dimg = o3d.t.geometry.Image(self._store.tensor(d, np.float32))
        with self._lock:
            try:
                keys = self._vbg.compute_unique_block_coordinates(
                    dimg, K, ext, 1.0, c.depth_max, self._mult).cpu().numpy()
            except RuntimeError as exc:  # Open3D samples pixels with a stride: a sparse frame may touch nothing
                if "No block is touched" not in str(exc):
                    raise
                self.frames_rejected += 1
                return IntegrationResult(False, f"no map block touched by the {n_valid} valid depth pixels",
                                         0, (time.perf_counter() - t0) * 1e3)
            carve = c.carve_free_space and self.frames_integrated % c.carve_every_n_frames == 0
            if carve:
                free = self._unsaturated(self._free_space_keys(d, camera, T), keys)
                keys = blocks.unique_keys(np.concatenate([keys, free]))
            keys, dropped = self._make_room(keys, T[:3, 3])
            d_hits = d if conf is None else np.where(conf >= 0.5, d, 0.0)
            if self._store.numpy_views:
                buf = self._store.activate(keys)
                # the hit counts (their own attribute) are updated by a pool thread meanwhile
                hits = (shared_executor(self._integrator.threads - 1).submit(self._mark_hits, d_hits, camera, T)
                        if self._integrator.threads > 1 else None)
                # block culling (numpy kernel) pays off for the free-space blocks of carving frames only
                self._integrator.integrate(self._store.block_views(), keys, buf, d, camera.K, T_cw, c.sdf_trunc,
                                           conf, None if col is None else col * np.float32(255.0), cull=carve)
                if hits is None:
                    self._mark_hits(d_hits, camera, T)
                else:
                    hits.result()
            else:
                self._integrate_open3d(keys, dimg, col, conf, K, ext, camera, T)
                self._mark_hits(d_hits, camera, T)
            if c.window_radius_m is not None:
                dropped += self._prune_locked(T[:3, 3], c.window_radius_m)
            self.frames_integrated += 1
        return IntegrationResult(True, "ok", n_valid, (time.perf_counter() - t0) * 1e3, len(keys), dropped)

    def _integrate_open3d(self, keys, dimg, col, conf, K, ext, camera, T) -> None:
        """Open3D's integration kernel (non-CPU devices), then the confidence correction."""
        c = self.config
        key_t = self._store.tensor(keys)
        before = self._snapshot(keys) if conf is not None else None
        if col is not None:
            cimg = o3d.t.geometry.Image(self._store.tensor(col, np.float32))
            self._vbg.integrate(key_t, dimg, cimg, K, ext, 1.0, c.depth_max, self._mult)
        else:
            self._vbg.integrate(key_t, dimg, K, ext, 1.0, c.depth_max, self._mult)
        if before is not None:
            self._apply_confidence(before, conf, camera, T)

    def _prepare_frame(self, depth, camera, T_world_cam, color, confidence):
        """Validated (depth with 0 for invalid, pose, color, confidence, n_valid) or a reject reason."""
        c = self.config
        hw = (camera.height, camera.width)
        d = np.asarray(depth)
        if d.shape != hw:
            return f"depth shape {d.shape} does not match camera {hw[0]}x{hw[1]}"
        if d.dtype.kind != "f":
            return f"depth dtype {d.dtype} is not floating point metres (convert 16UC1 millimetres first)"
        try:
            T = check_pose(T_world_cam, "T_world_cam")
        except ValueError as exc:
            return str(exc)
        if np.any(np.abs(T[:3, 3]) > blocks.KEY_LIMIT * c.block_size / 2):
            return f"T_world_cam translation {T[:3, 3]} is outside the representable map"
        d = d.astype(np.float32, copy=True)
        with np.errstate(invalid="ignore"):
            valid = np.isfinite(d) & (d >= c.depth_min) & (d <= c.depth_max)
        n_valid = int(valid.sum())
        if n_valid == 0:
            return (f"no valid depth pixels (all NaN/zero/non-finite or outside "
                    f"[{c.depth_min}, {c.depth_max}] m)")
        d[~valid] = 0.0
        col = None
        if color is not None:
            a = np.asarray(color)
            if a.shape != hw + (3,) or a.dtype != np.uint8:
                return f"color must be ({hw[0]}, {hw[1]}, 3) uint8, got {a.shape} {a.dtype}"
            if c.integrate_color:
                col = np.ascontiguousarray(a, dtype=np.float32) * np.float32(1.0 / 255.0)
        conf = None
        if confidence is not None:
            a = np.asarray(confidence)
            if a.shape != hw or a.dtype.kind not in "fiu":
                return f"confidence must be ({hw[0]}, {hw[1]}) numeric, got {a.shape} {a.dtype}"
            if c.weight_from_confidence:
                conf = np.nan_to_num(a.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
                conf = np.clip(conf, 0.0, 1.0)
        return d, T, col, conf, n_valid

    def _rays(self, camera: PinholeCamera, stride: int) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) components of the z = 1 optical rays of every ``stride``-th pixel (cached)."""
        key = (camera.width, camera.height, camera.K.tobytes(), stride)
        rays = self._rays_cache.get(key)
        if rays is None:
            if len(self._rays_cache) > 16:
                self._rays_cache.clear()
            r = camera.rays(np.float64)[stride // 2::stride, stride // 2::stride]
            rays = (np.ascontiguousarray(r[..., 0]), np.ascontiguousarray(r[..., 1]))
            self._rays_cache[key] = rays
        return rays

    def _free_space_keys(self, d: np.ndarray, camera: PinholeCamera, T: np.ndarray) -> np.ndarray:
        """Block keys crossed by camera rays between ``depth_min`` and each surface.

        Rays are subsampled so that neighbouring rays are at most one block
        apart at the farthest carved depth; samples along a ray are half a block apart.
        """
        c = self.config
        bs = c.block_size
        stride = int(np.clip(bs * min(camera.fx, camera.fy) / min(float(d.max()), c.carve_max_m), 1, 64))
        sub = d[stride // 2::stride, stride // 2::stride]
        ok = sub > 0
        if not ok.any():
            return np.zeros((0, 3), np.int32)
        rx, ry = (r[ok] for r in self._rays(camera, stride))
        # up to the truncation band (Open3D allocates that) or the carving range
        far = np.minimum(sub[ok].astype(np.float64) - c.sdf_trunc, c.carve_max_m)
        step = 0.5 * bs / float(np.sqrt(rx * rx + ry * ry + 1.0).max())
        n = int(np.ceil(max(far.max() - c.depth_min, 0.0) / step)) + 1
        if self._integrator.kernel == "numba":  # the same samples and keys, without the (rays x samples) arrays
            A, b = _scaled_pose(T, 1.0 / bs)
            return blocks.unpack(np.unique(tsdf_kernel.ray_block_keys(rx, ry, far, c.depth_min, step, n, A, b)))
        t = c.depth_min + step * np.arange(n)
        ray, sample = np.nonzero(t[None, :] <= far[:, None])
        z = np.concatenate([t[sample], np.maximum(far, c.depth_min)])  # samples, then the ends
        ray = np.concatenate([ray, np.arange(len(far))])
        return blocks.unique_keys(_grid_index(rx[ray] * z, ry[ray] * z, z, T, 1.0 / bs, np.floor))

    def _unsaturated(self, free: np.ndarray, surface: np.ndarray) -> np.ndarray:
        """Drop carving-only blocks that are already confidently free.

        A block none of whose voxels is near a surface in this frame, and
        whose every voxel has been seen free (``tsdf == 1``) with weight >=
        ``FREE_SATURATION_WEIGHT``, would only be re-confirmed: skipping it
        saves most of the integration time in steady flight and keeps free
        weights low, so obstacles that appear later show up within a frame
        or two. A block holding anything that is not free is integrated as usual.
        """
        free = free[~np.isin(blocks.pack(free), blocks.pack(surface))]
        buf, found = self._store.find(free)
        if not found.any():
            return free
        saturated = np.zeros(len(free), bool)
        saturated[found] = self._saturated_free(buf[found])
        return free[~saturated]

    def _saturated_free(self, buf: np.ndarray) -> np.ndarray:
        """(len(buf),) bool: every voxel of the blocks at ``buf`` has ``tsdf >= 0.999`` and
        ``weight >= FREE_SATURATION_WEIGHT`` (float32 comparisons)."""
        w_min, t_min = np.float32(FREE_SATURATION_WEIGHT), np.float32(0.999)
        if self._store.numpy_views and self._integrator.kernel == "numba":  # no (blocks x voxels) copies
            v = self._store.block_views()
            return tsdf_kernel.saturated_free(buf, v["tsdf"], v["weight"], w_min, t_min)
        w = self._store.gather_blocks("weight", buf).reshape(len(buf), -1)
        t = self._store.gather_blocks("tsdf", buf).reshape(len(buf), -1)
        return (w.min(axis=1) >= w_min) & (t.min(axis=1) >= t_min)

    def _mark_hits(self, d: np.ndarray, camera: PinholeCamera, T: np.ndarray) -> None:
        """Count this frame's depth endpoints in their (nearest-sample) voxels.

        Pixels are subsampled so that neighbouring endpoints are at most two
        voxels apart at the 90th-percentile depth (gaps fill in over frames; the
        ESDF error they cause is below a voxel); a voxel counts once per frame.
        With confidence weighting only pixels of confidence >= 0.5 count.
        """
        if not np.any(d > 0):
            return
        coarse = d[::8, ::8]
        far = float(np.percentile(coarse[coarse > 0], 90)) if np.any(coarse > 0) else float(d.max())
        stride = int(np.clip(2.0 * self.config.voxel_size * min(camera.fx, camera.fy) / far, 1, 8))
        sub = d[stride // 2::stride, stride // 2::stride]
        rx, ry = self._rays(camera, stride)
        scale = 1.0 / self.config.voxel_size
        if self._integrator.kernel == "numba":  # the same voxels, without repeats of the previous one
            v = tsdf_kernel.endpoint_voxels(np.ascontiguousarray(sub), rx, ry, *_scaled_pose(T, scale))
        else:
            ok = sub > 0
            z = sub[ok].astype(np.float64)
            v = _grid_index(rx[ok] * z, ry[ok] * z, z, T, scale, np.rint)
        lin, found = self._store.voxel_index_lin(v)
        hits = lin[found]
        self._store.scatter("hits", hits, self._store.gather("hits", hits) + 1.0)

    def _make_room(self, keys: np.ndarray, cam_pos: np.ndarray) -> tuple[np.ndarray, int]:
        """Enforce ``block_budget``: drop the farthest old blocks (then farthest new keys)."""
        budget = self.config.block_budget
        bs = self.config.block_size
        if len(keys) > budget:
            dist = np.linalg.norm((keys + 0.5) * bs - cam_pos, axis=1)
            keys = keys[np.argsort(dist, kind="stable")[:budget]]
        if self._store.size + len(keys) <= budget:  # fits even if every key is new: skip the lookup
            return keys, 0
        _, found = self._store.find(keys)
        excess = self._store.size + int((~found).sum()) - budget
        if excess <= 0:
            return keys, 0
        act_keys, _ = self._store.active()
        in_frame = np.isin(blocks.pack(act_keys), blocks.pack(keys))
        cand = act_keys[~in_frame]
        dist = np.linalg.norm((cand + 0.5) * bs - cam_pos, axis=1)
        evict = cand[np.argsort(-dist, kind="stable")[:excess]]
        dropped = self._store.erase(evict)
        short = excess - len(evict)
        if short > 0:  # not enough old blocks outside this frame: skip the farthest new ones
            new = keys[~found]
            dist_new = np.linalg.norm((new + 0.5) * bs - cam_pos, axis=1)
            skip = new[np.argsort(-dist_new, kind="stable")[:short]]
            keys = keys[~np.isin(blocks.pack(keys), blocks.pack(skip))]
        return keys, dropped

    def _snapshot(self, keys: np.ndarray) -> dict:
        """Activate ``keys`` and copy their tsdf/weight before an integration."""
        lin = self._store.block_lin(self._store.activate(keys))
        return {"keys": keys, "tsdf": self._store.gather("tsdf", lin), "weight": self._store.gather("weight", lin)}

    def _apply_confidence(self, before: dict, conf: np.ndarray, camera: PinholeCamera, T: np.ndarray) -> None:
        """Turn Open3D's unit-weight update into a confidence-weighted one.

        Open3D did ``t' = (w t + s) / (w + 1), w' = w + 1``; recover the
        observation ``s`` and redo the update with weight ``c`` = confidence
        of the pixel the voxel projects to.
        """
        # look the blocks up again: Open3D's integrate may have rehashed (moved) them
        lin = self._store.block_lin(self._store.find(before["keys"])[0])
        t_old, w_old = before["tsdf"], before["weight"]
        t_new, w_new = self._store.gather("tsdf", lin), self._store.gather("weight", lin)
        upd = w_new > w_old
        if not upd.any():
            return
        lin, t_old, w_old, t_new = lin[upd], t_old[upd], w_old[upd], t_new[upd]
        s = t_new * (w_old + 1.0) - w_old * t_old
        world = blocks.voxel_points(before["keys"], self._res, self.config.voxel_size)[upd]
        cam = blocks.rigid_transform(world - T[:3, 3], T[:3, :3].T, np.zeros(3))
        uv, _ = camera.project(cam)
        uv = np.nan_to_num(uv, nan=-1.0, posinf=-1.0, neginf=-1.0)  # Open3D only updates voxels in view
        # Open3D picks the pixel by truncation
        u = np.clip(uv[:, 0], 0, camera.width - 1).astype(np.int64)
        v = np.clip(uv[:, 1], 0, camera.height - 1).astype(np.int64)
        cw = conf[v, u]
        w = w_old + cw
        t = np.where(w > 0, (w_old * t_old + cw * s) / np.maximum(w, 1e-12), 0.0)
        self._store.scatter("tsdf", lin, t.astype(np.float32))
        self._store.scatter("weight", lin, w.astype(np.float32))

    # ------------------------------------------------------------------ prune
    def prune(self, center, radius_m: float | None = None) -> int:
        """Drop blocks whose centre is farther than ``radius_m`` (default
        ``window_radius_m``) from world point ``center``. Returns blocks dropped."""
        ctr = np.asarray(center, dtype=np.float64)
        if ctr.shape != (3,) or not np.all(np.isfinite(ctr)):
            raise ValueError(f"center must be a finite (3,) point, got {ctr!r}")
        r = self.config.window_radius_m if radius_m is None else float(radius_m)
        if r is None or not (math.isfinite(r) and r > 0):
            raise ValueError(f"radius_m must be a positive number (or set window_radius_m), got {radius_m!r}")
        with self._lock:
            return self._prune_locked(ctr, r)

    def _prune_locked(self, center: np.ndarray, radius: float) -> int:
        keys, _ = self._store.active()
        if len(keys) == 0:
            return 0
        dist = np.linalg.norm((keys + 0.5) * self.config.block_size - center, axis=1)
        return self._store.erase(keys[dist > radius])

    def clear(self) -> None:
        """Forget everything (keeps the configuration)."""
        with self._lock:
            self._store.erase(self._store.active()[0])

    # ---------------------------------------------------------------- queries
    def query(self, points) -> tuple[np.ndarray, np.ndarray]:
        """Signed distance at world points.

        ``points``: (N, 3) real array, metres in ``map``. Returns ``sdf`` (N,)
        float32 metres (positive in free space, clipped to ``+-sdf_trunc``,
        NaN where unknown) and ``known`` (N,) bool (voxel observed at least
        once). Non-finite or out-of-range points are unknown. Nearest-voxel
        lookup, vectorised (one hash-map lookup for all points).
        """
        p = blocks.check_points(points)
        n = len(p)
        sdf = np.full(n, np.nan, np.float32)
        known = np.zeros(n, bool)
        with self._lock:
            if n == 0 or self._store.size == 0:
                return sdf, known
            ok = np.all(np.isfinite(p), axis=1)
            ok &= np.all(np.abs(p) < blocks.KEY_LIMIT * self.config.block_size / 2, axis=1)
            idx = np.flatnonzero(ok) if not ok.all() else None
            lin, found = self._store.voxel_lin(p if idx is None else p[idx])
            lin = lin[found]
            t = self._store.gather("tsdf", lin)
            w = self._store.gather("weight", lin)
        hit = np.flatnonzero(found) if idx is None else idx[found]
        obs = w > 0
        sdf[hit[obs]] = t[obs] * np.float32(self.config.sdf_trunc)
        known[hit[obs]] = True
        return sdf, known

    def occupied(self, points, threshold: float = 0.0) -> np.ndarray:
        """(N,) bool: observed and ``sdf <= threshold`` metres (unknown is *not* occupied)."""
        sdf, known = self.query(points)
        with np.errstate(invalid="ignore"):
            return known & (sdf <= threshold)

    def esdf_window(self, center, half_extent_m, max_distance_m: float = 1.0):
        """Dense Euclidean distance grid around ``center``: see :func:`depth_nodes.mapping.esdf.esdf_window`."""
        from depth_nodes.mapping.esdf import esdf_window

        return esdf_window(self, center, half_extent_m, max_distance_m)

    def occupancy_window(self, lo, shape, hit_ratio: float = 0.2,
                         kernel: str = "auto") -> tuple[np.ndarray, np.ndarray]:
        """Dense (occupied, known) bool grids of ``shape`` (nx, ny, nz) for voxels ``lo + (i, j, k)``.

        ``lo``: (3,) integer voxel index of the first voxel (world point
        ``lo * voxel_size``). A voxel is *known* when observed (weight > 0) or
        hit; *occupied* when observed with ``sdf <= 0`` or when depth endpoints
        fell in it in at least ``hit_ratio`` of the frames that observed it
        (float32 comparison). Arrays are indexed ``[ix, iy, iz]`` (views of
        z-major memory). ``kernel``: ``"auto"`` (compiled when numba is
        available), ``"numba"`` (fills the grids straight from the block
        buffers) or ``"numpy"`` (the reference); same grids with each.
        """
        lo = np.asarray(lo, dtype=np.int64)
        shape = tuple(int(s) for s in shape)
        if lo.shape != (3,) or len(shape) != 3 or min(shape) < 1 or np.prod(shape, dtype=np.float64) > 2e8:
            raise ValueError(f"occupancy_window: lo must be (3,) and shape 3 positive ints (<2e8 voxels), "
                             f"got lo={lo!r} shape={shape!r}")
        try:  # float32, as numpy multiplies a Python float with the float32 weights
            ratio = np.float32(hit_ratio) if np.ndim(hit_ratio) == 0 else np.float32(np.nan)
        except (TypeError, ValueError):
            ratio = np.float32(np.nan)
        if not (np.isfinite(ratio) and ratio >= 0):
            raise ValueError(f"occupancy_window: hit_ratio must be a finite number >= 0, got {hit_ratio!r}")
        compiled = resolve_kernel(kernel) == "numba"
        r = self._res
        hi = lo + np.asarray(shape) - 1
        blo, bhi = lo >> self._shift, hi >> self._shift
        names = ("tsdf", "weight", "hits")
        with self._lock:
            keys, buf = self._store.active()
            if compiled:  # the kernel skips blocks outside the window
                occupied, known = np.zeros(shape[::-1], bool), np.zeros(shape[::-1], bool)
                if len(buf) and self._store.numpy_views:  # CPU: the block buffers in place
                    views = self._store.block_views()
                    arrays, rows = [views[n] for n in names], buf
                elif len(buf):  # CUDA: copies of the blocks in the window
                    sel = np.all((keys >= blo) & (keys <= bhi), axis=1)
                    keys, buf = keys[sel], buf[sel]
                    arrays = [self._store.gather_blocks(n, buf).reshape(len(buf), r ** 3) for n in names]
                    rows = np.arange(len(buf))
                if len(buf):
                    tsdf_kernel.occupancy_fill(keys, rows, *arrays, lo, r, ratio, occupied, known)
                return occupied.transpose(2, 1, 0), known.transpose(2, 1, 0)
            sel = np.all((keys >= blo) & (keys <= bhi), axis=1)
            keys, buf = keys[sel], buf[sel]
            nb = bhi - blo + 1
            # (bz, z, by, y, bx, x) layout: a reshape (no copy) gives the dense (Z, Y, X) grid
            code = np.zeros((nb[2], r, nb[1], r, nb[0], r), np.uint8)  # bit 0 occupied, bit 1 known
            keys = keys - blo
            if len(buf):
                t, w, h = (self._store.gather_blocks(n, buf)[..., 0] for n in names)
                seen = w > 0
                hit = h > 0
                occ = (seen & (t <= 0)) | (hit & (h >= ratio * w))
                code[keys[:, 2], :, keys[:, 1], :, keys[:, 0], :] = occ | ((seen | hit) << 1)
        off = lo - blo * r
        g = code.reshape(nb[2] * r, nb[1] * r, nb[0] * r)
        g = g[off[2]:off[2] + shape[2], off[1]:off[1] + shape[1], off[0]:off[0] + shape[0]]
        occupied = (g & 1).view(bool).transpose(2, 1, 0)
        known = (g >> 1).view(bool).transpose(2, 1, 0)
        return occupied, known

    # ---------------------------------------------------------------- outputs
    def stats(self) -> dict:
        """Block/voxel counts, memory (MB, voxel attributes at current capacity), CPU kernel and its threads."""
        with self._lock:
            n, cap = self._store.size, self._store.capacity
            chans = sum(3 if a == "color" else 1 for a in self._attr_names())
            bytes_per_block = self._res ** 3 * 4 * chans + 3 * 4
            return {
                "blocks": n,
                "voxels": n * self._res ** 3,
                "capacity_blocks": cap,
                "block_budget": self.config.block_budget,
                "memory_mb": cap * bytes_per_block / 1e6,
                "frames_integrated": self.frames_integrated,
                "frames_rejected": self.frames_rejected,
                "device": str(self.device),
                "kernel": self._integrator.kernel,
                "kernel_threads": self._integrator.threads,
            }

    def block_centers(self) -> np.ndarray:
        """(M, 3) float64 world centres (metres, ``map``) of the allocated blocks."""
        with self._lock:
            keys, _ = self._store.active()
        return (keys + 0.5) * self.config.block_size

    def _extract(self, what: str):
        """Open3D surface extraction, or None when there is no surface.

        Open3D keeps voxels with weight strictly above its threshold, so the
        inclusive ``surface_weight_threshold`` is passed slightly lowered. Its
        extractors raise instead of returning an empty result (0.20), hence
        the catch.
        """
        th = max(self.config.surface_weight_threshold - 1e-3, 0.0)
        with self._lock:
            if self._store.size == 0:
                return None
            try:
                if what == "points":
                    return self._vbg.extract_point_cloud(th)
                return self._vbg.extract_triangle_mesh(th)
            except RuntimeError as exc:
                log.debug("no surface extracted: %s", exc)
                return None

    def _empty_colors(self, n: int) -> np.ndarray | None:
        return np.zeros((n, 3), np.uint8) if self.config.integrate_color else None

    def surface_points(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Zero-crossing points of the TSDF: (points (N, 3) float32 world,
        normals (N, 3) float32, colors (N, 3) uint8 RGB or None)."""
        pcd = self._extract("points")
        if pcd is None or "positions" not in pcd.point:
            return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32), self._empty_colors(0)
        pts = pcd.point.positions.cpu().numpy().astype(np.float32)
        normals = (pcd.point.normals.cpu().numpy().astype(np.float32) if "normals" in pcd.point
                   else np.zeros_like(pts))
        colors = self._empty_colors(len(pts))
        if colors is not None and "colors" in pcd.point:
            colors = _to_uint8(pcd.point.colors.cpu().numpy())
        return pts, normals, colors

    def mesh(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Marching-cubes surface: (vertices (V, 3) float32 world, triangles
        (T, 3) int64 vertex indices, vertex colors (V, 3) uint8 or None)."""
        m = self._extract("mesh")
        if m is None or "positions" not in m.vertex or "indices" not in m.triangle:
            return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64), self._empty_colors(0)
        verts = m.vertex.positions.cpu().numpy().astype(np.float32)
        tris = m.triangle.indices.cpu().numpy().astype(np.int64)
        colors = self._empty_colors(len(verts))
        if colors is not None and "colors" in m.vertex:
            colors = _to_uint8(m.vertex.colors.cpu().numpy())
        return verts, tris, colors

    # ------------------------------------------------------------ persistence
    def save(self, path) -> None:
        """Write the map and its config to an ``.npz`` file (no pickle)."""
        import json

        with self._lock:
            keys, buf = self._store.active()
            arrays = {
                "format_version": np.array(_FORMAT_VERSION),
                "config_json": np.array(json.dumps(self.config.to_dict())),
                "keys": keys,
                "frames_integrated": np.array(self.frames_integrated),
            }
            for name in self._attr_names():
                arrays[name] = self._store.gather_blocks(name, buf)
        with open(path, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    @classmethod
    def load(cls, path, device: str | None = None) -> "TsdfMap":
        """Read a map written by :meth:`save` (optionally onto another device)."""
        import json
        import zipfile

        try:
            z = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{path}: cannot read a TsdfMap file: {exc}") from exc
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError(f"{path}: not a TsdfMap file (not an .npz archive)")
        with z:
            missing = {"format_version", "config_json", "keys", "tsdf", "weight"} - set(z.files)
            if missing:
                raise ValueError(f"{path}: not a TsdfMap file (missing {sorted(missing)})")
            if int(z["format_version"]) != _FORMAT_VERSION:
                raise ValueError(f"{path}: format_version {int(z['format_version'])} != {_FORMAT_VERSION}")
            cfg = json.loads(str(z["config_json"]))
            if not isinstance(cfg, dict):
                raise ValueError(f"{path}: config_json is not an object")
            if device is not None:
                cfg["device"] = device
            m = cls(TsdfConfig.from_dict(cfg))
            keys = z["keys"].astype(np.int32)
            r = m._res
            if keys.ndim != 2 or keys.shape[1] != 3 or z["tsdf"].shape[:4] != (len(keys), r, r, r):
                raise ValueError(f"{path}: inconsistent shapes keys {keys.shape} tsdf {z['tsdf'].shape}")
            if len(keys) > m.config.block_budget:
                raise ValueError(f"{path}: {len(keys)} blocks exceed block_budget {m.config.block_budget}")
            m.frames_integrated = int(z["frames_integrated"]) if "frames_integrated" in z.files else 0
            if len(keys):
                lin = m._store.block_lin(m._store.activate(keys))
                for name in m._attr_names():
                    if name not in z.files:
                        raise ValueError(f"{path}: attribute {name!r} missing")
                    vals = np.ascontiguousarray(z[name], dtype=np.float32).reshape(len(lin), -1)
                    m._store.scatter(name, lin, vals)
        return m


def _grid_index(x: np.ndarray, y: np.ndarray, z: np.ndarray, T: np.ndarray, scale: float, rounding) -> np.ndarray:
    """(N, 3) int64 ``rounding((T @ p) * scale)`` of optical-frame points given
    as separate (N,) coordinate arrays (much faster than (N, 3) products)."""
    A, b = _scaled_pose(T, scale)
    out = np.empty((len(z), 3), np.int64)
    for i in range(3):
        out[:, i] = rounding(A[i, 0] * x + A[i, 1] * y + A[i, 2] * z + b[i])
    return out


def _scaled_pose(T: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Rotation and translation of the 4x4 pose ``T``, both multiplied by ``scale``."""
    return T[:3, :3] * scale, T[:3, 3] * scale


def _to_uint8(colors: np.ndarray) -> np.ndarray:
    """Open3D colour output (0..1 or 0..255 floats) as uint8 RGB."""
    c = np.asarray(colors, dtype=np.float32)
    if c.size and c.max() <= 1.0 + 1e-6:
        c = c * 255.0
    return np.clip(np.rint(c), 0, 255).astype(np.uint8)


__all__ = ["TsdfConfig", "TsdfMap", "IntegrationResult"]
