"""Camera rendering: ground-truth depth, RGB and rectified stereo pairs.

Cameras follow REP-103 optical frames (z forward, x right, y down); poses are
``T_world_cam`` (4x4, camera optical frame -> world). Per-pixel rays are built
once per camera with optical z = 1, so the ray parameter at the hit *is* the
depth along the optical axis (what depth images store), not the ray length.

Visibility comes from the compiled z-buffer rasterizer (:mod:`depth_nodes.sim.raster`),
which returns what ray casting these pixel rays would (exact depth and triangle id per
pixel) at a fraction of the cost; Open3D ray casting remains for shadows, radar and
distance queries. Shading is compiled per pixel (:mod:`depth_nodes.sim.shade_kernel`);
rasterizing (in interleaved row bands) and shading (in row blocks) run on one small
thread pool (see :func:`default_shade_threads`).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from depth_nodes.camera import PinholeCamera
from depth_nodes.geometry import check_pose, interpolate_pose, make_pose
from depth_nodes.sim.appearance import Appearance
from depth_nodes.sim.raster import TriangleRasterizer
from depth_nodes.sim.shade_kernel import surface_geometry
from depth_nodes.sim.world import RayHits, World


def default_shade_threads() -> int:
    """Threads used for shading: the CPUs this process may run on, at most 4."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:          # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(4, n))


_POOLS: dict[tuple[int, int], ThreadPoolExecutor] = {}


def _shading_pool(n_threads: int) -> ThreadPoolExecutor:
    """Shared thread pool for shading (one per process id, so forked children make their own)."""
    key = (os.getpid(), n_threads)
    if key not in _POOLS:
        _POOLS[key] = ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix="sim-shade")
    return _POOLS[key]


def stereo_right_pose(T_world_left, baseline: float) -> np.ndarray:
    """Pose of the right camera of a rectified pair: the left pose shifted +B along optical x."""
    return np.asarray(T_world_left, dtype=np.float64) @ make_pose(translation=[float(baseline), 0.0, 0.0])


@dataclass
class StereoFrame:
    """Left/right uint8 RGB images and left ground-truth depth (float32 metres, NaN on miss)."""

    left: np.ndarray
    right: np.ndarray
    depth: np.ndarray


class CameraRenderer:
    """Renders one camera model in one world; the ray bundle is computed once.

    ``appearance`` defaults to :meth:`Appearance.for_world` of the world's spec;
    ``shade_threads`` (default :func:`default_shade_threads`) rasterizes and shades image
    rows in parallel. Images are identical for any thread count.
    """

    def __init__(self, world: World, camera: PinholeCamera, appearance: Appearance | None = None,
                 shade_threads: int | None = None):
        if not isinstance(camera, PinholeCamera):
            raise ValueError(f"camera must be a PinholeCamera, got {type(camera).__name__}")
        self.world = world
        self.camera = camera
        self._appearance = appearance
        self._noise_bank: np.ndarray | None = None
        self._ray_norm = np.linalg.norm(camera.rays(np.float32), axis=2)   # rays have optical z = 1
        self._inv_ray_norm = (1.0 / np.maximum(self._ray_norm, 1e-6)).astype(np.float32)
        self._shade_threads = default_shade_threads() if shade_threads is None else int(shade_threads)
        if self._shade_threads < 1:
            raise ValueError(f"shade_threads must be >= 1, got {shade_threads}")
        self._raster = TriangleRasterizer(world.vertices, world.triangles, camera, world.materials)

    @property
    def appearance(self) -> Appearance:
        """Appearance used for RGB (built on first use, so depth-only rendering never pays for it)."""
        if self._appearance is None:
            self._appearance = Appearance.for_world(self.world.spec)
        return self._appearance

    @property
    def shape(self) -> tuple[int, int]:
        return self.camera.height, self.camera.width

    def cast(self, T_world_cam) -> tuple[RayHits, np.ndarray, np.ndarray]:
        """Hits of every pixel ray (rasterized; equal to a ray cast): (hits, origin (3,), world
        directions (N, 3) with optical z = 1)."""
        return self._cast_many([T_world_cam])[0]

    def _cast_many(self, poses) -> list[tuple[RayHits, np.ndarray, np.ndarray]]:
        """Hits of every pixel ray of several poses: [(hits, origin (3,), world directions (N, 3))].

        Interleaved row bands of all poses are rasterized together on the shading thread pool.
        """
        n_threads = self._shade_threads
        pool = _shading_pool(n_threads) if n_threads > 1 else None
        poses = [check_pose(T, "T_world_cam") for T in poses]
        views = self._raster.render_many(poses, pool, bands=n_threads)
        return [(hits, T[:3, 3].astype(np.float32), dirs) for T, (hits, dirs) in zip(poses, views)]

    def depth(self, T_world_cam) -> np.ndarray:
        """(H, W) float32 depth along the optical axis, metres, NaN on miss."""
        return self._depth_from(self.cast(T_world_cam)[0])

    def _depth_from(self, hits: RayHits) -> np.ndarray:
        d = hits.t_hit.reshape(self.shape).astype(np.float32, copy=True)
        d[~np.isfinite(d)] = np.nan
        return d

    def rgbd(self, T_world_cam, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(rgb (H, W, 3) uint8, depth (H, W) float32) from one visibility pass.

        ``rng`` draws the sensor noise; ``None`` renders noise-free.
        """
        hits, origin, dirs = self.cast(T_world_cam)
        depth = self._depth_from(hits)
        return self._expose(self._radiance(hits, origin, dirs), rng), depth

    def rgb(self, T_world_cam, rng: np.random.Generator | None = None) -> np.ndarray:
        return self.rgbd(T_world_cam, rng)[0]

    def rgb_motion_blur(self, T_world_cam_open, T_world_cam_close, samples: int = 3,
                        rng: np.random.Generator | None = None) -> np.ndarray:
        """RGB integrated over the exposure: mean radiance of ``samples`` poses from open to close."""
        if not 1 <= int(samples) <= 32:
            raise ValueError(f"samples must be in [1, 32], got {samples}")
        acc = None
        for a in np.linspace(0.0, 1.0, int(samples)):
            hits, origin, dirs = self.cast(interpolate_pose(T_world_cam_open, T_world_cam_close, float(a)))
            rad = self._radiance(hits, origin, dirs)
            acc = rad if acc is None else acc + rad
        return self._expose(acc / np.float32(samples), rng)

    def _expose(self, radiance: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
        noise = None
        if rng is not None:
            n = radiance.size
            if self._noise_bank is None:
                # standard-normal sensor noise bank read at a random offset per frame (much
                # cheaper than drawing fresh Gaussian noise for every pixel)
                bank_rng = np.random.default_rng([self.appearance.seed, 9])
                self._noise_bank = bank_rng.standard_normal(2 * n, np.float32)
            start = int(rng.integers(0, self._noise_bank.size - n + 1))
            noise = self._noise_bank[start:start + n].reshape(radiance.shape)
        return self.appearance.to_uint8(radiance, noise)

    def _radiance(self, hits: RayHits, origin, dirs) -> np.ndarray:
        """(H, W, 3) float32 scene radiance in display units before exposure and noise."""
        return self._radiance_many([(hits, origin, dirs)])[0]

    def _radiance_many(self, views) -> list[np.ndarray]:
        """Radiance of several cast views ``[(hits, origin, dirs)]``, shaded in row blocks.

        Pixels are independent, so blocks run on a thread pool (the kernels and numpy
        release the GIL); the result does not depend on the number of threads.
        """
        h, w = self.shape
        n_threads = self._shade_threads
        app = self.appearance                                     # built here, not in a worker thread
        out = [np.empty((h, w, 3), np.float32) for _ in views]
        per_view = max(1, -(-n_threads // len(views)))            # ceil: keep every thread busy
        edges = np.linspace(0, h, per_view + 1).round().astype(int)
        blocks = [(i, slice(edges[k], edges[k + 1])) for i in range(len(views)) for k in range(per_view)
                  if edges[k + 1] > edges[k]]

        def shade(block) -> None:
            i, rows = block
            hits, origin, dirs = views[i]
            px = slice(rows.start * w, rows.stop * w)
            part = RayHits(t_hit=hits.t_hit[px], material=hits.material[px], primitive=hits.primitive[px],
                           normals=hits.normals[px])
            self._shade_rows(app, part, origin, dirs[px], rows, out[i][rows].reshape(-1, 3))

        if n_threads <= 1 or len(blocks) == 1:
            for b in blocks:
                shade(b)
        else:
            list(_shading_pool(n_threads).map(shade, blocks))
        return out

    def _shade_rows(self, app: Appearance, hits: RayHits, origin, dirs, rows: slice, out: np.ndarray) -> None:
        """Radiance of image rows ``rows`` into ``out`` (R * W, 3) from their hits and world ray directions."""
        n = len(hits.t_hit)
        pts = np.empty((n, 3), np.float32)
        footprint, sky_sin = np.empty(n, np.float32), np.empty(n, np.float32)
        n_sky = surface_geometry(hits.t_hit, hits.normals, dirs, origin, self._ray_norm[rows].reshape(n),
                                 self._inv_ray_norm[rows].reshape(n), np.float32(1.0 / self.camera.fx), pts,
                                 footprint, sky_sin)
        light = hits.normals @ app.sun_dir.astype(np.float32)
        np.clip(light, 0.0, 1.0, out=light)
        if app.shadows:
            light *= self._lit(pts, hits)
        light *= np.float32(app.sun)
        light += np.float32(app.ambient)
        app.radiance(hits.t_hit, pts, hits.normals, hits.material, footprint, light, sky_sin[:n_sky], out=out)

    def _lit(self, pts: np.ndarray, hits: RayHits) -> np.ndarray:
        """1 where the sun is visible from the surface point, 0 in shadow (one ray per pixel)."""
        sun = self.appearance.sun_dir.astype(np.float32)
        lit = np.ones(len(pts), dtype=np.float32)
        idx = np.flatnonzero(hits.hit)
        if idx.size:
            o = pts[idx] + hits.normals[idx] * 2e-3
            sh = self.world.raycast(o, np.broadcast_to(sun, o.shape))
            lit[idx[sh.hit]] = 0.0
        return lit

    def stereo(self, T_world_left, baseline: float, rng: np.random.Generator | None = None) -> StereoFrame:
        """Rectified pair: right camera is the left shifted by +``baseline`` m along optical x."""
        if not (np.isfinite(baseline) and baseline > 0):
            raise ValueError(f"baseline must be > 0 metres, got {baseline}")
        (hl, ol, dl), (hr, o_r, dr) = self._cast_many([T_world_left, stereo_right_pose(T_world_left, baseline)])
        rad_left, rad_right = self._radiance_many([(hl, ol, dl), (hr, o_r, dr)])
        left = self._expose(rad_left, rng)
        right = self._expose(rad_right, rng)
        depth = self._depth_from(hl)
        return StereoFrame(left=left, right=right, depth=depth)


def render_depth(world: World, cam: PinholeCamera, T_world_cam) -> np.ndarray:
    """Ground-truth depth image (H, W) float32: metres along optical z, NaN on miss."""
    return CameraRenderer(world, cam).depth(T_world_cam)


def render_rgbd(world: World, cam: PinholeCamera, T_world_cam, appearance: Appearance | None = None,
                rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One-off (rgb uint8, depth float32); use :class:`CameraRenderer` in loops."""
    return CameraRenderer(world, cam, appearance).rgbd(T_world_cam, rng)

