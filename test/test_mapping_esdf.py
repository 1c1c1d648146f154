"""Local ESDF window: conservative Euclidean distances, saturation, window bounds."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from depth_nodes.camera import PinholeCamera
from depth_nodes.mapping import EsdfGrid, TsdfConfig, TsdfMap
from depth_nodes.mapping.esdf import bounded_edt
from depth_nodes.mapping.synthetic import Box, Plane, Scene, look_at

CAM = PinholeCamera.from_fov(160, 120, 90.0)
VS = 0.1
GROUND_Z = 0.03
BOX = Box((3.03, -0.47, 0.0), (3.83, 0.43, 1.21))


@pytest.fixture(scope="module")
def scene_map():
    scene = Scene(planes=[Plane((0.0, 0.0, GROUND_Z), (0.0, 0.0, 1.0))], boxes=[BOX])
    m = TsdfMap(TsdfConfig(voxel_size=VS, sdf_trunc=0.3))
    poses = [look_at((0.0, y, 1.2), (3.4, y * 0.3, 0.4)) for y in (-0.6, 0.0, 0.6)]
    poses += [look_at((3.4, -3.0, 1.2), (3.4, 0.0, 0.4)), look_at((1.0, -1.5, 1.5), (3.0, -0.8, 0.2))]
    for T in poses:
        assert m.integrate(scene.render_depth(CAM, T), CAM, T).accepted
    return scene, m


def test_distances_match_analytic_within_bounds(scene_map, rng):
    scene, m = scene_map
    grid = m.esdf_window((2.0, 0.0, 0.8), (2.5, 2.0, 0.9), max_distance_m=1.0)
    assert isinstance(grid, EsdfGrid)
    # points in observed free space between the cameras and the box / above the ground
    pts = rng.uniform((0.8, -0.8, 0.15), (2.9, 0.8, 1.3), (4000, 3))
    d, known = grid.query(pts)
    true = scene.signed_distance(pts)
    sel = known & (true < 0.9)
    assert sel.mean() > 0.5
    # a lower bound (planner contract) that is tight to within two voxels
    assert np.all(d[sel] <= true[sel] + 1e-3)
    assert np.all(d[sel] >= true[sel] - 2.0 * VS)
    assert np.median(true[sel] - d[sel]) < 1.2 * VS
    # far from everything: saturated at max_distance
    assert grid.max_distance == 1.0 and np.nanmax(d) <= 1.0


def test_ground_seen_at_grazing_angle_is_an_obstacle(scene_map):
    scene, m = scene_map
    grid = m.esdf_window((5.0, 0.0, 0.5), (3.0, 3.0, 1.0), max_distance_m=1.0)
    pts = np.array([[5.5, 1.5, 0.4], [6.5, -1.5, 0.3], [7.0, 0.8, 0.5]])  # ground 6-8 m ahead
    d, known = grid.query(pts)
    assert known.all()
    true = scene.signed_distance(pts)
    assert np.all(d <= true + 1e-3) and np.all(d >= true - 2.0 * VS)


def test_window_edges_and_bad_arguments(scene_map):
    _, m = scene_map
    grid = m.esdf_window((2.0, 0.0, 0.8), 1.0)
    assert grid.shape == (21, 21, 21) == grid.distance.shape == grid.known.shape
    idx = np.array([[0, 0, 0], [3, 7, 11], [20, 20, 20], [10, 2, 19]])
    d_idx, k_idx = grid.query(grid.origin + idx * VS)
    np.testing.assert_array_equal(d_idx, grid.distance[tuple(idx.T)])
    np.testing.assert_array_equal(k_idx, grid.known[tuple(idx.T)])
    d, known = grid.query(np.array([[10.0, 0.0, 0.8], [np.nan, 0.0, 0.0], [2.0, 0.0, 0.8]]))
    assert np.isnan(d[:2]).all() and not known[:2].any() and np.isfinite(d[2])
    with pytest.raises(ValueError, match="half_extent_m"):
        m.esdf_window((0.0, 0.0, 0.0), -1.0)
    with pytest.raises(ValueError, match="center"):
        m.esdf_window((0.0, np.inf, 0.0), 1.0)
    with pytest.raises(ValueError, match="max_distance_m"):
        m.esdf_window((0.0, 0.0, 0.0), 1.0, max_distance_m=0.0)
    with pytest.raises(ValueError, match="exceeds"):
        m.esdf_window((0.0, 0.0, 0.0), 1000.0)
    with pytest.raises(ValueError, match="points"):
        grid.query(np.zeros((4, 2)))


def test_empty_map_window_is_unknown_and_saturated():
    grid = TsdfMap().esdf_window((0.0, 0.0, 1.0), (1.0, 1.0, 0.5), max_distance_m=0.8)
    assert not grid.known.any()
    np.testing.assert_allclose(grid.distance, 0.8)


@pytest.mark.parametrize("max_voxels", [1, 3, 5, 10, 20])
@pytest.mark.parametrize("layout", ["z_major", "c_order"])
def test_bounded_edt_is_exact_up_to_the_bound(max_voxels, layout, rng):
    occ = np.zeros((40, 35, 25), bool)
    occ[tuple(rng.integers(0, s, 40) for s in occ.shape)] = True
    if layout == "z_major":  # how occupancy_window hands it over
        occ = np.ascontiguousarray(occ.transpose(2, 1, 0)).transpose(2, 1, 0)
    d2 = bounded_edt(occ, max_voxels)
    assert d2.shape == occ.shape and d2.dtype.kind == "u"
    ref = np.rint(ndimage.distance_transform_edt(~occ) ** 2).astype(np.int64)
    np.testing.assert_array_equal(d2.astype(np.int64), np.minimum(ref, (max_voxels + 1) ** 2))


def test_bounded_edt_of_an_empty_or_full_grid():
    assert np.all(bounded_edt(np.zeros((3, 4, 5), bool), 4) == 25)
    assert np.all(bounded_edt(np.ones((3, 4, 5), bool), 4) == 0)


def test_obstacle_that_appears_and_leaves_is_tracked():
    wall = Plane((6.03, 0.0, 0.0), (-1.0, 0.0, 0.0))
    empty, boxed = Scene(planes=[wall]), Scene(planes=[wall], boxes=[Box((3.03, -0.5, 0.5), (3.53, 0.5, 1.5))])
    T = look_at((0.0, 0.0, 1.0), (6.0, 0.0, 1.0))
    m = TsdfMap(TsdfConfig(voxel_size=VS, sdf_trunc=0.3))
    probe = np.array([[3.1, 0.0, 1.0], [2.7, 0.0, 1.0]])  # inside the box, 0.33 m in front of it

    def esdf():
        return m.esdf_window((3.0, 0.0, 1.0), (1.0, 1.0, 0.8)).query(probe)[0]

    for _ in range(6):  # free space in front of the wall saturates
        assert m.integrate(empty.render_depth(CAM, T), CAM, T).accepted
    assert np.all(esdf() >= 0.9)
    for _ in range(2):
        assert m.integrate(boxed.render_depth(CAM, T), CAM, T).accepted
    d = esdf()
    assert d[0] < 0.05 and d[1] <= 0.33  # the new face counts from its first frames
    for _ in range(12):
        assert m.integrate(empty.render_depth(CAM, T), CAM, T).accepted
    assert np.all(esdf() >= 0.9)
