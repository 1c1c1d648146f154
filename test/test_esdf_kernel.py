"""The compiled (numba) ESDF window kernels give the numpy reference's arrays exactly:
the occupancy fill of ``TsdfMap.occupancy_window`` and the bounded distance transform."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage

from depth_nodes.camera import PinholeCamera
from depth_nodes.mapping import TsdfConfig, TsdfMap
from depth_nodes.mapping.block_integrator import resolve_kernel
from depth_nodes.mapping.esdf import bounded_edt, esdf_window
from depth_nodes.mapping.synthetic import demo_scene, look_at

if resolve_kernel("auto") != "numba":
    pytest.skip("numba is not installed or its JIT is disabled", allow_module_level=True)

VS = 0.1


def _reference_d2(occ: np.ndarray, max_voxels: int) -> np.ndarray:
    """Exact squared EDT (scipy), capped like ``bounded_edt``."""
    if not occ.any():
        return np.full(occ.shape, (max_voxels + 1) ** 2, np.int64)
    d2 = np.rint(ndimage.distance_transform_edt(~occ) ** 2).astype(np.int64)
    return np.minimum(d2, (max_voxels + 1) ** 2)


def _assert_same_edt(occ: np.ndarray, max_voxels: int) -> np.ndarray:
    fast = bounded_edt(occ, max_voxels, kernel="numba")
    ref = bounded_edt(occ, max_voxels, kernel="numpy")
    assert fast.dtype == ref.dtype and fast.shape == ref.shape == occ.shape
    np.testing.assert_array_equal(fast, ref)
    return fast


@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 23, 17), (23, 1, 17), (23, 17, 1), (40, 35, 25), (3, 2, 70)])
@pytest.mark.parametrize("density", [0.0, 0.003, 0.05, 0.5, 1.0])
def test_compiled_edt_equals_numpy_edt_on_random_grids(shape, density, rng):
    occ = rng.random(shape) < density
    for max_voxels in (0, 1, 2, 5, 10, 11):  # uint8 up to 10, uint16 from 11
        d2 = _assert_same_edt(occ, max_voxels)
        np.testing.assert_array_equal(d2.astype(np.int64), _reference_d2(occ, max_voxels))


@pytest.mark.parametrize("layout", ["z_major", "c_order", "strided"])
def test_compiled_edt_takes_any_memory_layout(layout, rng):
    occ = rng.random((30, 26, 21)) < 0.01
    if layout == "z_major":  # how occupancy_window hands it over
        occ = np.ascontiguousarray(occ.transpose(2, 1, 0)).transpose(2, 1, 0)
    elif layout == "strided":
        occ = (rng.random((60, 26, 42)) < 0.01)[::2, :, ::2]
    d2 = _assert_same_edt(occ, 7)
    np.testing.assert_array_equal(d2.astype(np.int64), _reference_d2(occ, 7))


def test_compiled_edt_with_a_wide_bound_uses_uint32(rng):
    occ = rng.random((9, 12, 7)) < 0.02
    occ[4, 6, 3] = True
    d2 = _assert_same_edt(occ, 200)  # (201**2 + 200**2) needs 32 bits
    assert d2.dtype == np.uint32
    np.testing.assert_array_equal(d2.astype(np.int64), _reference_d2(occ, 200))


def test_single_obstacle_gives_the_exact_ball(rng):
    occ = np.zeros((31, 29, 27), bool)
    occ[15, 14, 13] = True
    idx = np.indices(occ.shape)
    true = (idx[0] - 15) ** 2 + (idx[1] - 14) ** 2 + (idx[2] - 13) ** 2
    for max_voxels in (3, 10, 14):
        d2 = bounded_edt(occ, max_voxels, kernel="numba").astype(np.int64)
        np.testing.assert_array_equal(d2, np.minimum(true, (max_voxels + 1) ** 2))


@settings(max_examples=60, deadline=None)
@given(occ=arrays(np.bool_, st.tuples(*[st.integers(1, 14)] * 3)), max_voxels=st.integers(0, 13))
def test_compiled_edt_property(occ, max_voxels):
    _assert_same_edt(occ, max_voxels)


def test_edt_bad_arguments():
    with pytest.raises(ValueError, match="max_voxels"):
        bounded_edt(np.zeros((2, 2, 2), bool), -1)
    with pytest.raises(ValueError, match="3-D"):
        bounded_edt(np.zeros((2, 2), bool), 3)
    with pytest.raises(ValueError, match="kernel"):
        bounded_edt(np.zeros((2, 2, 2), bool), 3, kernel="cuda")


# ---------------------------------------------------------------- occupancy fill
def _random_map(tmp_path, rng, res: int) -> TsdfMap:
    """A map file of random blocks (negative and positive keys, gaps between them) whose
    voxels mix unobserved, observed free / occupied, exact zero sdf and integer hit counts
    and weights (ties of ``hits == hit_ratio * weight``), loaded through ``TsdfMap.load``."""
    grid = np.stack(np.meshgrid(np.arange(-3, 3), np.arange(-2, 3), np.arange(-1, 2), indexing="ij"), -1)
    keys = grid.reshape(-1, 3)
    keys = keys[rng.random(len(keys)) < 0.7].astype(np.int32)
    shape = (len(keys), res, res, res, 1)
    weight = np.where(rng.random(shape) < 0.3, 0.0, rng.integers(1, 8, shape)).astype(np.float32)
    weight[rng.random(shape) < 0.2] *= np.float32(0.37)  # non-integer weights too
    tsdf = rng.uniform(-1.0, 1.0, shape).astype(np.float32)
    tsdf[rng.random(shape) < 0.05] = 0.0
    hits = np.where(rng.random(shape) < 0.5, 0.0, rng.integers(1, 6, shape)).astype(np.float32)
    cfg = TsdfConfig(voxel_size=VS, block_resolution=res)
    path = tmp_path / f"random_{res}.npz"
    np.savez(path, format_version=np.array(1), config_json=np.array(json.dumps(cfg.to_dict())), keys=keys,
             tsdf=tsdf, weight=weight, hits=hits)
    return TsdfMap.load(path)


def _assert_same_occupancy(m: TsdfMap, lo, shape, hit_ratio=0.2):
    occ_f, known_f = m.occupancy_window(lo, shape, hit_ratio, kernel="numba")
    occ_r, known_r = m.occupancy_window(lo, shape, hit_ratio, kernel="numpy")
    assert occ_f.shape == known_f.shape == tuple(shape) and occ_f.dtype == known_f.dtype == bool
    np.testing.assert_array_equal(occ_f, occ_r)
    np.testing.assert_array_equal(known_f, known_r)
    return occ_f, known_f


@pytest.mark.parametrize("res", [8, 16])
def test_compiled_occupancy_equals_numpy_on_random_blocks(tmp_path, rng, res):
    m = _random_map(tmp_path, rng, res)
    lo_all = np.array([-3, -2, -1]) * res
    whole = (6 * res, 5 * res, 3 * res)
    occ, known = _assert_same_occupancy(m, lo_all, whole)
    assert 0.05 < occ.mean() < 0.6 and known.mean() > 0.3  # the window saw real data
    windows = [
        (lo_all - 5, np.add(whole, 10)),                    # the map and empty space around it
        ((-res - 3, -5, -2), (2 * res + 1, 11, 7)),         # straddling block borders on every axis
        ((2, -res + 1, 0), (1, 1, 1)),                      # one voxel
        ((-7, 3, -res), (1, 2 * res, 2 * res)),             # thin along x
        ((-7, 3, -res), (2 * res, 1, 2 * res)),             # thin along y
        ((-7, 3, -res), (2 * res, 2 * res, 1)),             # thin along z
        ((10 * res, 0, 0), (20, 20, 20)),                   # no block at all
    ]
    for lo, shape in windows:
        _assert_same_occupancy(m, lo, shape)
    for ratio in (0.0, 1.0 / 3.0, 0.5, 1.0, np.float64(0.2), 7):
        _assert_same_occupancy(m, lo_all, whole, ratio)


def test_occupancy_bad_arguments(tmp_path, rng):
    m = _random_map(tmp_path, rng, 8)
    for bad in (-0.1, np.nan, np.inf, "many", [0.2, 0.3]):
        with pytest.raises(ValueError, match="hit_ratio"):
            m.occupancy_window((0, 0, 0), (4, 4, 4), bad)
    with pytest.raises(ValueError, match="kernel"):
        m.occupancy_window((0, 0, 0), (4, 4, 4), kernel="fast")


def test_empty_map_window_is_empty_with_both_kernels():
    m = TsdfMap(TsdfConfig(voxel_size=VS))
    for kernel in ("numba", "numpy"):
        occ, known = m.occupancy_window((-3, 4, 0), (5, 6, 7), kernel=kernel)
        assert occ.shape == (5, 6, 7) and not occ.any() and not known.any()


# ---------------------------------------------------------------- whole window
@pytest.fixture(scope="module")
def demo_map():
    cam = PinholeCamera.from_fov(160, 120, 90.0)
    scene = demo_scene()
    m = TsdfMap(TsdfConfig(voxel_size=VS))
    for i in range(4):
        T = look_at((0.5 * i, 0.4 * np.sin(i), 1.2), (10.0, 1.5 * np.cos(i), 0.9))
        assert m.integrate(scene.render_depth(cam, T), cam, T).accepted
    return m


@pytest.mark.parametrize("max_distance_m", [0.1, 0.35, 1.0, 1.5])
def test_compiled_esdf_window_equals_numpy(demo_map, max_distance_m):
    center, half = (4.03, -0.37, 1.21), (3.0, 2.6, 1.1)  # lo off the block grid
    fast = esdf_window(demo_map, center, half, max_distance_m, kernel="numba")
    ref = esdf_window(demo_map, center, half, max_distance_m, kernel="numpy")
    assert fast.shape == ref.shape and np.array_equal(fast.origin, ref.origin)
    np.testing.assert_array_equal(fast.known, ref.known)
    np.testing.assert_array_equal(fast.distance, ref.distance)
    assert fast.known.any() and (fast.distance == 0).any() and (fast.distance == max_distance_m).any()
    # the map's own method (default kernel) gives the same grid
    np.testing.assert_array_equal(demo_map.esdf_window(center, half, max_distance_m).distance, ref.distance)
