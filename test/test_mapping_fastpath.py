"""The fast TSDF integration path (block culling, kernel threads) gives the reference path's map."""
from __future__ import annotations

import numpy as np
import pytest

from depth_nodes.camera import PinholeCamera
from depth_nodes.geometry import invert_pose
from depth_nodes.mapping import TsdfConfig, TsdfMap
from depth_nodes.mapping.block_integrator import BlockIntegrator
from depth_nodes.mapping.range_table import RangeExtrema
from depth_nodes.mapping.synthetic import demo_scene, look_at
from depth_nodes.mapping.voxel_store import VoxelStore

CAM = PinholeCamera.from_fov(160, 120, 90.0)


@pytest.mark.parametrize("shape", [(121, 161), (7, 5), (1, 1), (33, 200)])
def test_range_extrema_bound_the_exact_extrema(rng, shape):
    img = rng.uniform(-5.0, 5.0, shape).astype(np.float32)
    img[rng.random(shape) < 0.1] = -np.inf
    ext = RangeExtrema(img)
    n = 400
    r = np.sort(rng.integers(0, shape[0], (n, 2)), axis=1)
    c = np.sort(rng.integers(0, shape[1], (n, 2)), axis=1)
    lo, hi = ext.query(r[:, 0], r[:, 1], c[:, 0], c[:, 1])
    t = ext.tile
    for i in range(n):
        exact = img[r[i, 0]:r[i, 1] + 1, c[i, 0]:c[i, 1] + 1]
        assert lo[i] <= exact.min() and hi[i] >= exact.max()
        # the bound comes from pixels near the rectangle (within its tiles' doubling)
        span = 2 * max(r[i, 1] - r[i, 0], c[i, 1] - c[i, 0]) + 2 * t
        near = img[max(r[i, 0] - span, 0):r[i, 1] + span + 1, max(c[i, 0] - span, 0):c[i, 1] + span + 1]
        assert lo[i] >= near.min() and hi[i] <= near.max()


def test_range_extrema_rejects_bad_image():
    with pytest.raises(ValueError, match="image"):
        RangeExtrema(np.zeros((0, 4)))


def _frame(rng):
    scene = demo_scene()
    T = look_at((0.3, 0.2, 1.2), (6.0, -0.5, 0.8))
    depth = scene.render_depth(CAM, T).astype(np.float32)
    depth[~(depth <= 12.0)] = 0.0
    depth[rng.random(depth.shape) < 0.02] = 0.0  # holes over the left half
    depth[:, 90:] = scene.render_depth(CAM, T)[:, 90:]
    depth[~(depth <= 12.0)] = 0.0
    return depth, T


def _blocks_in_view(T, rng):
    """Blocks in front of, beside and behind the camera (a cube of keys around it)."""
    c = np.floor(T[:3, 3] / 0.8).astype(np.int32)
    r = np.arange(-4, 12)
    keys = np.stack(np.meshgrid(r, np.arange(-8, 8), np.arange(-2, 4), indexing="ij"), -1).reshape(-1, 3) + c
    return keys[rng.permutation(len(keys))].astype(np.int32)


@pytest.mark.parametrize("mode", ["plain", "weight", "color"])
def test_culled_threaded_kernel_is_bit_identical(rng, mode):
    import open3d.core as o3c

    depth, T = _frame(rng)
    keys = _blocks_in_view(T, rng)
    weight = rng.uniform(0.0, 1.0, depth.shape).astype(np.float32) if mode == "weight" else None
    color = rng.integers(0, 256, depth.shape + (3,)).astype(np.float32) if mode == "color" else None
    results, counts = [], []
    for cull, threads in ((False, 1), (True, 1), (True, 3)):
        store = VoxelStore(["tsdf", "weight", "color"], 0.1, 8, 8192, o3c.Device("CPU:0"))
        integ = BlockIntegrator(8, 0.1, cull=cull, threads=threads)
        buf = store.activate(keys)
        for dx in (0.0, 0.13):  # two frames: the second updates observed voxels
            T2 = T.copy()
            T2[:3, 3] += (dx, -dx / 2, 0.0)
            integ.integrate(store.block_views(), keys, buf, depth, CAM.K, invert_pose(T2), 0.3,
                            weight=weight, color=color)
            counts.append(integ.last_counts)
        results.append({k: v[buf].copy() for k, v in store.block_views().items()})
    for name in ("tsdf", "weight", "color"):
        assert np.array_equal(results[0][name], results[1][name]), name
        assert np.array_equal(results[0][name], results[2][name]), name
    assert (results[0]["weight"] > 0).mean() > 0.05  # the frame did observe voxels
    skipped, free, projected = counts[-1]
    assert skipped > 0 and projected > 0 and skipped + free + projected == len(keys)
    assert (free > 0) == (mode == "plain")  # free-space shortcut only for unit weights without colour


def test_map_with_culling_equals_reference_map(rng):
    scene = demo_scene()
    poses = [look_at((0.3 * i, 0.4 * np.sin(i), 1.2), (10.0, rng.uniform(-2, 2), 1.0)) for i in range(6)]
    maps = []
    for cull, threads in ((False, 1), (True, 1), (True, 3)):  # threads > 1: hit counts run concurrently too
        m = TsdfMap(TsdfConfig(carve_every_n_frames=1))
        m._integrator.cull, m._integrator.threads = cull, threads
        for T in poses:
            assert m.integrate(scene.render_depth(CAM, T), CAM, T).accepted
        maps.append(m)
    assert maps[1]._integrator.last_counts[1] > 0  # free-space blocks took the shortcut
    pts = rng.uniform((-1.0, -6.0, -0.5), (13.0, 6.0, 3.5), (50_000, 3))
    s0, k0 = maps[0].query(pts)
    assert k0.mean() > 0.2
    keys0, buf0 = maps[0]._store.active()
    o0 = np.lexsort(keys0.T)
    for m in maps[1:]:
        s1, k1 = m.query(pts)
        assert np.array_equal(k0, k1) and np.array_equal(s0, s1, equal_nan=True)
        keys1, buf1 = m._store.active()
        o1 = np.lexsort(keys1.T)
        assert np.array_equal(keys0[o0], keys1[o1])
        for name in ("tsdf", "weight", "hits"):
            a = maps[0]._store.gather_blocks(name, buf0[o0])
            b = m._store.gather_blocks(name, buf1[o1])
            assert np.array_equal(a, b), name


def test_thread_count_validated():
    with pytest.raises(ValueError, match="threads"):
        BlockIntegrator(8, 0.1, threads=0)


def _integrate_threaded(_=None) -> bool:
    m = TsdfMap(TsdfConfig())
    m._integrator.threads = 2
    T = look_at((0.3, 0.2, 1.2), (6.0, -0.5, 0.8))
    return m.integrate(demo_scene().render_depth(CAM, T), CAM, T).accepted


def test_threaded_kernel_works_in_forked_children():
    import multiprocessing as mp

    assert _integrate_threaded()  # the parent's pool exists before the fork
    with mp.get_context("fork").Pool(2) as pool:
        assert pool.map_async(_integrate_threaded, range(2)).get(timeout=120) == [True, True]
