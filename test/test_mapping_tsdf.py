"""TSDF map: signed distances, unknown space, frame rejection, persistence, bounded memory."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from depth_nodes.camera import PinholeCamera
from depth_nodes.mapping import TsdfConfig, TsdfMap
from depth_nodes.mapping.synthetic import Box, Plane, Scene, look_at

CAM = PinholeCamera.from_fov(160, 120, 90.0)
VS = 0.1
TRUNC = 0.3
WALL_X = 5.03  # not on a voxel sample plane


def wall_scene() -> Scene:
    return Scene(planes=[Plane((WALL_X, 0.0, 0.0), (-1.0, 0.0, 0.0))])


def wall_poses():
    return [look_at((x, y, 1.0), (WALL_X, y, 1.0)) for x, y in ((0.0, 0.0), (0.5, 0.3), (1.0, -0.3))]


def build(scene: Scene, poses, **cfg) -> TsdfMap:
    m = TsdfMap(TsdfConfig(voxel_size=VS, sdf_trunc=TRUNC, **cfg))
    for T in poses:
        r = m.integrate(scene.render_depth(CAM, T), CAM, T)
        assert r.accepted, r.reason
        assert r.n_valid > 0
    return m


@pytest.fixture(scope="module")
def wall_map() -> TsdfMap:
    return build(wall_scene(), wall_poses())


def test_plane_signed_distance_in_front_and_behind(wall_map):
    xs = np.linspace(WALL_X - 0.25, WALL_X + 0.25, 21)
    pts = np.stack([xs, np.full_like(xs, 0.1), np.full_like(xs, 1.0)], axis=1)
    sdf, known = wall_map.query(pts)
    assert known.all()
    expected = np.clip(WALL_X - xs, -TRUNC, TRUNC)
    # nearest-voxel lookup: up to half a voxel along the plane normal, plus a bit
    np.testing.assert_allclose(sdf, expected, atol=0.5 * VS + 0.02)
    assert sdf.dtype == np.float32 and known.dtype == bool
    assert (sdf[xs < WALL_X - 0.1] > 0).all() and (sdf[xs > WALL_X + 0.1] < 0).all()


def test_observed_free_space_is_known_free(wall_map):
    pts = np.array([[2.0, 0.0, 1.0], [3.5, 0.5, 1.5], [4.0, -0.5, 0.6]])
    sdf, known = wall_map.query(pts)
    assert known.all()
    np.testing.assert_allclose(sdf, TRUNC, atol=1e-5)


def test_never_observed_space_is_unknown(wall_map):
    pts = np.array([[WALL_X + 1.5, 0.0, 1.0],   # behind the wall, beyond truncation
                    [2.0, 40.0, 1.0],             # far outside the field of view
                    [-3.0, 0.0, 1.0]])            # behind the cameras
    sdf, known = wall_map.query(pts)
    assert not known.any()
    assert np.isnan(sdf).all()
    assert not wall_map.occupied(pts).any()


def test_box_faces_from_several_poses():
    box = Box((3.05, -0.45, 0.0), (3.85, 0.45, 1.2))
    scene = Scene(boxes=[box])
    # head-on views of the -x and -y faces (the TSDF stores distances along camera rays,
    # which exceed Euclidean distances when a surface is seen obliquely)
    poses = [look_at((0.5, 0.0, 0.6), (3.4, 0.0, 0.6)), look_at((0.5, 0.2, 0.7), (3.4, 0.2, 0.7)),
             look_at((3.45, -3.0, 0.6), (3.45, 0.0, 0.6)), look_at((3.3, -2.5, 0.5), (3.3, 0.0, 0.5))]
    m = build(scene, poses)
    # points in front of the -x face and the -y face, and just inside the box
    pts = np.array([[2.83, 0.0, 0.62], [2.96, 0.1, 0.58], [3.14, 0.0, 0.61],
                    [3.42, -0.66, 0.6], [3.48, -0.57, 0.53], [3.41, -0.36, 0.6]])
    sdf, known = m.query(pts)
    assert known.all()
    np.testing.assert_allclose(sdf, scene.signed_distance(pts), atol=0.5 * VS + 0.03)
    assert m.occupied(pts[[2, 5]]).all() and not m.occupied(pts[[0, 3]]).any()


def _probe_points(rng) -> np.ndarray:
    return rng.uniform((-1.0, -4.0, -1.0), (7.0, 4.0, 3.0), (5000, 3))


@pytest.mark.parametrize("bad", ["nan", "zeros", "small", "transposed", "uint16", "pose_nan",
                                 "pose_scaled", "color_size"])
def test_bad_frames_rejected_and_map_unchanged(wall_map, bad, rng):
    T = wall_poses()[0]
    depth = wall_scene().render_depth(CAM, T)
    color = None
    if bad == "nan":
        depth = np.full_like(depth, np.nan)
    elif bad == "zeros":
        depth = np.zeros_like(depth)
    elif bad == "small":
        depth = depth[:60, :80]
    elif bad == "transposed":
        depth = depth.T.copy()
    elif bad == "uint16":
        depth = (depth * 1000).astype(np.uint16)
    elif bad == "pose_nan":
        T = T.copy()
        T[0, 3] = np.nan
    elif bad == "pose_scaled":
        T = T.copy()
        T[:3, :3] *= 2.0
    elif bad == "color_size":
        color = np.zeros((10, 10, 3), np.uint8)
    pts = _probe_points(rng)
    before = wall_map.query(pts)
    stats_before = wall_map.stats()
    r = wall_map.integrate(depth, CAM, T, color=color)
    assert not r.accepted
    assert r.reason and r.reason != "ok"
    after = wall_map.query(pts)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])
    assert wall_map.stats()["blocks"] == stats_before["blocks"]
    assert wall_map.stats()["frames_rejected"] == stats_before["frames_rejected"] + 1


def test_reject_reasons_name_the_problem(wall_map):
    T = wall_poses()[0]
    assert "shape" in wall_map.integrate(np.zeros((5, 5), np.float32), CAM, T).reason
    assert "valid" in wall_map.integrate(np.full((120, 160), np.nan, np.float32), CAM, T).reason
    assert "T_world_cam" in wall_map.integrate(np.ones((120, 160), np.float32), CAM, np.eye(3)).reason
    with pytest.raises(ValueError, match="PinholeCamera"):
        wall_map.integrate(np.ones((120, 160), np.float32), "camera", T)


def test_save_load_gives_identical_queries(tmp_path, rng):
    scene = wall_scene()
    m = TsdfMap(TsdfConfig(voxel_size=VS, sdf_trunc=TRUNC, integrate_color=True))
    for T in wall_poses():
        color = np.zeros((120, 160, 3), np.uint8)
        color[..., 0] = 200
        assert m.integrate(scene.render_depth(CAM, T), CAM, T, color=color).accepted
    path = tmp_path / "map.npz"
    m.save(path)
    m2 = TsdfMap.load(path)
    assert m2.config == m.config
    pts = _probe_points(rng)
    a, b = m.query(pts), m2.query(pts)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert m2.stats()["blocks"] == m.stats()["blocks"]
    p1, _, c1 = m.surface_points()
    p2, _, c2 = m2.surface_points()
    assert len(p1) == len(p2) > 100
    assert c2 is not None and np.median(c2[:, 0]) >= 190 and np.median(c2[:, 1]) <= 10


def test_load_rejects_non_map_file(tmp_path):
    path = tmp_path / "junk.npz"
    np.savez(path, a=np.zeros(3))
    with pytest.raises(ValueError, match="not a TsdfMap"):
        TsdfMap.load(path)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"PK\x03\x04 definitely not a zip archive")
    with pytest.raises(ValueError, match="TsdfMap"):
        TsdfMap.load(garbage)
    array = tmp_path / "array.npy"
    np.save(array, np.zeros(3))
    with pytest.raises(ValueError, match="not an .npz"):
        TsdfMap.load(array)


def test_surface_and_mesh_lie_on_the_wall(wall_map):
    pts, normals, colors = wall_map.surface_points()
    assert len(pts) > 500 and colors is None
    assert np.median(np.abs(pts[:, 0] - WALL_X)) < 0.02
    assert np.median(np.abs(normals[:, 0])) > 0.9
    verts, tris, vcol = wall_map.mesh()
    assert len(tris) > 500 and tris.max() < len(verts) and vcol is None
    assert np.median(np.abs(verts[:, 0] - WALL_X)) < 0.02


def corridor_scene(length: float = 80.0) -> Scene:
    return Scene(planes=[Plane((0.0, 0.0, 0.0), (0.0, 0.0, 1.0))],
                 boxes=[Box((x, 2.0, 0.0), (x + 1.0, 3.0, 2.5)) for x in np.arange(2.0, length, 4.0)]
                 + [Box((x, -3.0, 0.0), (x + 1.0, -2.0, 2.5)) for x in np.arange(4.0, length, 4.0)])


def test_sliding_window_bounds_blocks_over_long_trajectory():
    radius = 5.0
    m = TsdfMap(TsdfConfig(voxel_size=VS, sdf_trunc=TRUNC, window_radius_m=radius, depth_max=8.0))
    scene = corridor_scene()
    counts = []
    for x in np.arange(0.0, 40.0, 2.0):
        T = look_at((x, 0.0, 1.2), (x + 6.0, 0.0, 0.8))
        r = m.integrate(scene.render_depth(CAM, T), CAM, T)
        assert r.accepted
        counts.append(m.stats()["blocks"])
    bs = m.config.block_size
    bound = 4.0 / 3.0 * np.pi * (radius + bs) ** 3 / bs ** 3
    assert max(counts) <= bound
    assert counts[-1] < 1.5 * counts[len(counts) // 2] + 50  # no growth with distance flown
    sdf, known = m.query(np.array([[3.0, 0.0, 0.05], [2.5, 2.0, 1.0]]))  # seen early, now far away
    assert not known.any()
    # the neighbourhood of the camera is still mapped
    _, known_here = m.query(np.array([[40.0, 0.0, 0.05]]))
    assert known_here.all()


def test_block_budget_is_never_exceeded():
    m = TsdfMap(TsdfConfig(voxel_size=VS, sdf_trunc=TRUNC, block_budget=300))
    scene = corridor_scene(30.0)
    for x in np.arange(0.0, 16.0, 2.0):
        T = look_at((x, 0.0, 1.2), (x + 6.0, 0.0, 0.8))
        r = m.integrate(scene.render_depth(CAM, T), CAM, T)
        assert r.accepted
        assert m.stats()["blocks"] <= 300
    _, known = m.query(np.array([[15.0, 0.0, 1.0]]))  # near the latest camera: kept
    assert known.all()


@pytest.mark.parametrize("every", [1, 3])
def test_carving_every_n_frames_defers_free_space_only(every):
    """Frames between carving frames still integrate surfaces, not the free space before them."""
    m = TsdfMap(TsdfConfig(voxel_size=VS, sdf_trunc=TRUNC, carve_every_n_frames=every))
    scene = wall_scene()
    for y in (0.0, 6.0):  # the second view looks at a part of the wall the first never saw
        T = look_at((0.0, y, 1.0), (WALL_X, y, 1.0))
        assert m.integrate(scene.render_depth(CAM, T), CAM, T).accepted
    surface = np.array([[WALL_X - 0.05, 6.0, 1.0]])
    free_first, free_second = np.array([[2.0, 0.0, 1.0]]), np.array([[2.0, 6.0, 1.0]])
    assert m.query(surface)[1].all() and m.query(free_first)[1].all()
    assert m.query(free_second)[1].all() == (every == 1)


def test_prune_drops_far_blocks(wall_map):
    m = build(wall_scene(), wall_poses())
    n0 = m.stats()["blocks"]
    dropped = m.prune((0.0, 0.0, 1.0), radius_m=3.0)
    assert dropped > 0 and m.stats()["blocks"] == n0 - dropped
    assert not m.query(np.array([[WALL_X, 0.0, 1.0]]))[1].any()
    with pytest.raises(ValueError, match="center"):
        m.prune((np.nan, 0.0, 0.0), 3.0)
    with pytest.raises(ValueError, match="radius"):
        m.prune((0.0, 0.0, 0.0))


def test_confidence_weighting():
    scene_a = Scene(planes=[Plane((4.03, 0.0, 0.0), (-1.0, 0.0, 0.0))])
    scene_b = Scene(planes=[Plane((4.13, 0.0, 0.0), (-1.0, 0.0, 0.0))])
    T = look_at((0.0, 0.0, 1.0), (4.0, 0.0, 1.0))
    pts = np.array([[3.9, 0.0, 1.0], [4.0, 0.2, 1.0]])
    ones, zeros = np.ones((120, 160), np.float32), np.zeros((120, 160), np.float32)
    results = {}
    for name, conf_b in (("ignored", zeros), ("weighted", zeros), ("equal", ones)):
        m = TsdfMap(TsdfConfig(voxel_size=VS, sdf_trunc=TRUNC, weight_from_confidence=name != "ignored"))
        assert m.integrate(scene_a.render_depth(CAM, T), CAM, T, confidence=ones).accepted
        assert m.integrate(scene_b.render_depth(CAM, T), CAM, T, confidence=conf_b).accepted
        results[name] = m.query(pts)[0]
    single = build(scene_a, [T]).query(pts)[0]
    np.testing.assert_allclose(results["weighted"], single, atol=1e-5)  # zero-confidence frame has no effect
    np.testing.assert_allclose(results["equal"], results["ignored"], atol=1e-5)  # unit weights == Open3D's
    assert np.all(results["equal"] > single + 0.03)  # the farther plane pulled the average


def test_config_validation():
    for bad in (dict(voxel_size=0.0), dict(voxel_size=float("nan")), dict(block_resolution=12),
                dict(sdf_trunc=0.01), dict(depth_min=5.0, depth_max=1.0), dict(device="GPU"),
                dict(block_budget=0), dict(window_radius_m=-1.0), dict(integrate_color="yes"),
                dict(carve_every_n_frames=0), dict(carve_every_n_frames=1.5), dict(carve_every_n_frames=True)):
        with pytest.raises(ValueError, match="TsdfConfig"):
            TsdfConfig(**bad)
    with pytest.raises(ValueError, match="unknown field"):
        TsdfConfig.from_dict({"voxel": 0.1})
    assert TsdfConfig.from_dict(TsdfConfig(voxel_size=0.2, sdf_trunc=0.6).to_dict()).voxel_size == 0.2


def test_cuda_request_falls_back_to_cpu_without_gpu():
    import open3d.core as o3c

    if o3c.cuda.is_available():
        pytest.skip("CUDA present: fallback path not exercised")
    m = build(wall_scene(), wall_poses()[:1], device="CUDA:0")
    assert m.stats()["device"] == "CPU:0"
    assert m.query(np.array([[2.0, 0.0, 1.0]]))[1].all()


def test_empty_map_queries(rng):
    m = TsdfMap()
    sdf, known = m.query(rng.normal(size=(100, 3)))
    assert sdf.shape == (100,) and np.isnan(sdf).all() and not known.any()
    assert m.query(np.zeros((0, 3)))[0].shape == (0,)
    assert len(m.surface_points()[0]) == 0 and len(m.mesh()[1]) == 0


_SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6)


@settings(max_examples=80, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pts=st.one_of(
    hnp.arrays(st.sampled_from([np.float64, np.float32]), _SHAPES,
               elements=st.floats(allow_nan=True, allow_infinity=True, width=32) | st.floats(-8.0, 8.0, width=32)),
    hnp.arrays(np.int32, _SHAPES, elements=st.integers(-5, 5)),
    hnp.arrays(np.float64, st.tuples(st.integers(0, 50), st.just(3)), elements=st.floats(-2.0, 8.0))))
def test_query_property(wall_map, pts):
    try:
        sdf, known = wall_map.query(pts)
    except ValueError:
        assert pts.ndim != 2 or pts.shape[1] != 3
        return
    n = pts.shape[0]
    assert sdf.shape == (n,) and known.shape == (n,)
    assert sdf.dtype == np.float32 and known.dtype == bool
    assert np.all(np.isfinite(sdf[known])) and np.all(np.abs(sdf[known]) <= TRUNC + 1e-6)
    assert np.isnan(sdf[~known]).all()
    assert not known[~np.all(np.isfinite(np.asarray(pts, dtype=np.float64)), axis=1)].any()


def test_tensor_indexing_path_matches_numpy_views(tmp_path, rng):
    """The Open3D-tensor access path and kernel (used on CUDA) give the same map as
    the CPU numpy views and kernel; also covers hash-map growth during
    confidence-weighted colour frames."""
    pts = _probe_points(rng)
    results = []
    for numpy_views in (True, False):
        m = TsdfMap(TsdfConfig(voxel_size=VS, sdf_trunc=TRUNC, integrate_color=True,
                               weight_from_confidence=True, block_budget=500))
        m._store._cpu = numpy_views
        for T in wall_poses():
            r = m.integrate(wall_scene().render_depth(CAM, T), CAM, T, color=np.full((120, 160, 3), 90, np.uint8),
                            confidence=np.full((120, 160), 0.7, np.float32))
            assert r.accepted, r.reason
        m.save(tmp_path / f"m{numpy_views}.npz")
        loaded = TsdfMap.load(tmp_path / f"m{numpy_views}.npz")
        loaded._store._cpu = numpy_views
        grid = m.esdf_window((4.0, 0.0, 1.0), (1.5, 1.5, 1.0))
        results.append((m.query(pts), loaded.query(pts), grid.query(pts)))
        assert m.stats()["blocks"] <= 500
    for a, b in zip(*results):  # numpy kernel vs Open3D kernel + confidence correction: float rounding only
        np.testing.assert_allclose(a[0], b[0], atol=1e-5)
        np.testing.assert_array_equal(a[1], b[1])
    assert results[0][0][1].any()
