"""The compiled (numba) TSDF kernels and helpers give the numpy reference path's map, bit for bit."""
from __future__ import annotations

import numpy as np
import open3d.core as o3c
import pytest

from depth_nodes.camera import PinholeCamera
from depth_nodes.geometry import invert_pose
from depth_nodes.mapping import TsdfConfig, TsdfMap
from depth_nodes.mapping.block_integrator import BlockIntegrator, resolve_kernel
from depth_nodes.mapping.synthetic import demo_scene, look_at
from depth_nodes.mapping.voxel_store import VoxelStore

if resolve_kernel("auto") != "numba":
    pytest.skip("numba is not installed or its JIT is disabled", allow_module_level=True)
from depth_nodes.mapping import tsdf_kernel  # noqa: E402

CAM = PinholeCamera.from_fov(160, 120, 90.0)
SHAPE = (CAM.height, CAM.width)
RES, VS, TRUNC = 8, 0.1, 0.3


def _depth(rng, T):
    """Scene depth with noise, holes and a few infinite returns (metres, 0 = none)."""
    d = demo_scene().render_depth(CAM, T).astype(np.float32)
    d[~(d <= 12.0)] = 0.0
    d *= rng.uniform(0.98, 1.02, d.shape).astype(np.float32)
    right = np.arange(d.shape[1]) >= d.shape[1] // 2  # holes on the right only: free blocks remain on the left
    d[(rng.random(d.shape) < 0.05) & right] = 0.0
    d[(rng.random(d.shape) < 0.002) & right] = np.inf
    return d


def _keys(T, rng):
    """Blocks in front of, beside, behind and around the camera (near-plane blocks included)."""
    c = np.floor(T[:3, 3] / (RES * VS)).astype(np.int32)
    r = np.arange(-3, 10)
    keys = np.stack(np.meshgrid(r, np.arange(-6, 6), np.arange(-2, 3), indexing="ij"), -1).reshape(-1, 3) + c
    return keys[rng.permutation(len(keys))].astype(np.int32)


def _seeded_store(keys, rng):
    """A store whose blocks already hold random observations (so the running averages matter)."""
    store = VoxelStore(["tsdf", "weight", "color"], VS, RES, 8192, o3c.Device("CPU:0"))
    buf = store.activate(keys)
    v = store.block_views()
    seen = rng.random((len(buf), RES ** 3)) < 0.5
    v["weight"][buf] = np.where(seen, rng.uniform(0.1, 5.0, seen.shape), 0.0).astype(np.float32)
    v["tsdf"][buf] = np.where(seen, rng.uniform(-1.0, 1.0, seen.shape), 0.0).astype(np.float32)
    v["color"][buf] = rng.uniform(0.0, 255.0, (len(buf), RES ** 3, 3)).astype(np.float32)
    return store, buf


@pytest.mark.parametrize("mode", ["plain", "weight", "color", "weight+color"])
def test_compiled_integrator_equals_numpy_integrator(rng, mode):
    T = look_at((0.3, 0.2, 1.2), (6.0, -0.5, 0.8))
    keys = _keys(T, rng)
    frames = []
    for dx in (0.0, 0.17):  # two frames: the second updates voxels the first observed
        T2 = T.copy()
        T2[:3, 3] += (dx, -dx / 2, 0.05)
        weight = rng.uniform(-0.2, 1.0, SHAPE).astype(np.float32) if "weight" in mode else None
        color = rng.uniform(0.0, 255.0, SHAPE + (3,)).astype(np.float32) if "color" in mode else None
        frames.append((_depth(rng, T2), invert_pose(T2), weight, color))
    results = {}
    for kernel, cull, threads in (("numpy", False, 1), ("numba", False, 1), ("numba", True, 1), ("numba", True, 3),
                                  ("numpy", True, 2)):
        store, buf = _seeded_store(keys, np.random.default_rng(5))
        integ = BlockIntegrator(RES, VS, cull=cull, threads=threads, kernel=kernel)
        assert integ.kernel == kernel
        for depth, T_cw, weight, color in frames:
            integ.integrate(store.block_views(), keys, buf, depth, CAM.K, T_cw, TRUNC, weight=weight, color=color)
        results[(kernel, cull, threads)] = ({k: v[buf].copy() for k, v in store.block_views().items()},
                                            integ.last_counts)
    ref, _ = results.pop(("numpy", False, 1))
    fresh, _ = _seeded_store(keys, np.random.default_rng(5))
    before = fresh.block_views()["weight"][fresh.find(keys)[0]]
    assert (ref["weight"] != before).mean() > 0.05  # the frames did update voxels
    for setup, (maps, counts) in results.items():
        for name in ("tsdf", "weight", "color"):
            assert np.array_equal(ref[name], maps[name], equal_nan=True), (setup, name)
        if setup[1]:  # culled: some blocks skipped, and the free-space shortcut only for unit weights, no colour
            assert counts[0] > 0 and (counts[1] > 0) == (mode == "plain"), (setup, counts)


def _chunk_inputs(rng, n_blocks, h, w, lattice):
    """Random projective block origins (in view, behind the camera, grazing the camera plane, and
    far outside the image, past the int32 range), padded images and voxel rows. ``lattice``: samples
    project exactly onto pixel borders around the image edges instead (integer offsets, z a power of 2)."""
    integ = BlockIntegrator(RES, VS, kernel="numpy")
    if lattice:
        local = (integ._local / VS * (1.0, 1.0, 0.0)).astype(np.float32).T.copy()
        z = 2.0 ** rng.integers(-1, 2, n_blocks)
        x = rng.choice([-9, -7, -4, -1, 0, 1, w - 8, w - 7, w - 6, w - 1, w, w + 1], n_blocks)
        y = rng.choice([-9, -7, -1, 0, 1, h - 8, h - 7, h - 6, h - 1, h, 5], n_blocks)
        origin = np.stack([x, y, np.ones(n_blocks)], 1) * z[:, None]
    else:
        P = np.array([[40.0, 0.0, 30.0], [0.0, 40.0, 25.0], [0.0, 0.0, 1.0]]) / TRUNC
        local = (integ._local @ P.T).astype(np.float32).T.copy()
        kind = rng.integers(0, 3, n_blocks)
        z = np.where(kind == 0, rng.uniform(-3.0, 30.0, n_blocks),
                     np.where(kind == 1, rng.uniform(-0.6, 0.05, n_blocks), 1e-7))
        origin = np.stack([rng.uniform(-2.0, 1.2, n_blocks) * w * z, rng.uniform(-2.0, 1.2, n_blocks) * h * z, z], 1)
        origin[rng.random(n_blocks) < 0.1, 0] = 5e10  # u beyond the int32 range
    origin = origin.astype(np.float32)
    d_pad = BlockIntegrator._pad(np.where(rng.random((h, w)) < 0.1, 0.0, rng.uniform(0.5, 40.0, (h, w))), 0.0)
    d_pad[d_pad <= 0] = -np.inf
    w_pad = BlockIntegrator._pad(rng.uniform(-0.1, 1.0, (h, w)), 0.0)
    c_pad = BlockIntegrator._pad(rng.uniform(0.0, 255.0, (h, w, 3)), 0.0)
    cap = n_blocks + 5
    views = {"tsdf": rng.uniform(-1.0, 1.0, (cap, RES ** 3)).astype(np.float32),
             "weight": rng.uniform(0.0, 3.0, (cap, RES ** 3)).astype(np.float32),
             "color": rng.uniform(0.0, 255.0, (cap, RES ** 3, 3)).astype(np.float32)}
    rows = rng.permutation(cap)[:n_blocks].astype(np.int64)
    return origin, rows, local, d_pad, w_pad, c_pad, views


@pytest.mark.parametrize("lattice", [False, True])
@pytest.mark.parametrize("weighted,colored", [(False, False), (True, False), (False, True), (True, True)])
def test_compiled_kernel_equals_numpy_kernel_on_random_blocks(rng, weighted, colored, lattice):
    h, w = 37, 53
    origin, rows, local, d_pad, w_pad, c_pad, views = _chunk_inputs(rng, 300, h, w, lattice)
    ref = {k: v.copy() for k, v in views.items()}
    before = views["weight"].copy()
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        BlockIntegrator._chunk_update(origin, rows, True, local, d_pad.ravel(), w_pad if weighted else None,
                                      c_pad.reshape(-1, 3) if colored else None, h, w,
                                      ref["tsdf"], ref["weight"], ref["color"] if colored else None)
    tsdf_kernel.update_blocks(origin, rows, local, d_pad, w_pad, c_pad, views["tsdf"], views["weight"],
                              views["color"], weighted, colored, 0, 150)
    tsdf_kernel.update_blocks(origin, rows, local, d_pad, w_pad, c_pad, views["tsdf"], views["weight"],
                              views["color"], weighted, colored, 150, 300)
    changed = ref["weight"] != before
    assert 0.01 < changed.mean() < 0.9  # some voxels observed, many not
    for name in ("tsdf", "weight", "color"):
        assert np.array_equal(ref[name], views[name], equal_nan=True), name


def _map_with_kernel(cfg, kernel):
    m = TsdfMap(cfg)
    m._integrator.kernel = resolve_kernel(kernel)
    return m


@pytest.mark.parametrize("extras", [{}, {"integrate_color": True, "weight_from_confidence": True}])
def test_map_with_compiled_kernel_equals_numpy_map(rng, extras):
    scene = demo_scene()
    cfg = TsdfConfig(carve_every_n_frames=1, **extras)
    maps = [_map_with_kernel(cfg, "numpy"), _map_with_kernel(cfg, "numba")]
    for i in range(5):
        T = look_at((0.3 * i, 0.4 * np.sin(i), 1.2), (10.0, rng.uniform(-2, 2), 1.0))
        depth = scene.render_depth(CAM, T)
        color = rng.integers(0, 256, SHAPE + (3,), dtype=np.uint8)
        conf = rng.uniform(0.0, 1.0, SHAPE)
        for m in maps:
            assert m.integrate(depth, CAM, T, color=color, confidence=conf).accepted
    names = ["tsdf", "weight", "hits"] + (["color"] if extras else [])
    (k0, b0), (k1, b1) = (m._store.active() for m in maps)
    o0, o1 = np.lexsort(k0.T), np.lexsort(k1.T)
    assert np.array_equal(k0[o0], k1[o1])
    for name in names:
        a, b = maps[0]._store.gather_blocks(name, b0[o0]), maps[1]._store.gather_blocks(name, b1[o1])
        assert np.array_equal(a, b), name
    assert (maps[0]._store.gather_blocks("weight", b0) > 0).mean() > 0.1
    if not extras:  # unit weights: some carved blocks are saturated free (and were skipped by both maps)
        ref = maps[0]._saturated_free(b0)
        maps[0]._integrator.kernel = "numba"
        assert np.array_equal(ref, maps[0]._saturated_free(b0)) and 0 < ref.sum() < len(b0)


def test_compiled_carving_keys_equal_numpy_keys(rng):
    scene = demo_scene()
    m = _map_with_kernel(TsdfConfig(), "numba")
    for T in (look_at((0.3, 0.2, 1.2), (6.0, -0.5, 0.8)), look_at((2.0, -1.0, 2.5), (-3.0, 4.0, 0.2))):
        d = scene.render_depth(CAM, T).astype(np.float32)
        d[~(d <= 20.0)] = 0.0
        d[rng.random(d.shape) < 0.1] = 0.0
        keys = []
        for kernel in ("numba", "numpy"):
            m._integrator.kernel = kernel
            keys.append(m._free_space_keys(d, CAM, T))
        assert len(keys[0]) > 100 and np.array_equal(keys[0], keys[1])


def test_kernel_choice_validated():
    assert resolve_kernel("numpy") == "numpy"
    assert resolve_kernel("auto") == resolve_kernel("numba") == "numba"
    with pytest.raises(ValueError, match="kernel"):
        BlockIntegrator(RES, VS, kernel="cuda")


def test_bench_tsdf_reports_the_kernel(capsys):
    import json

    from depth_nodes.cli import main

    assert main(["bench", "tsdf", "--json", "--frames", "3", "--points", "100", "--kernel", "numpy"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["kernel"] == "numpy" and r["map"]["kernel"] == "numpy" and r["integrate_320x240_ms"] > 0
    with pytest.raises(SystemExit):  # argparse rejects an unknown kernel
        main(["bench", "tsdf", "--json", "--kernel", "cuda"])
