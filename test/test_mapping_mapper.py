"""Mapper: pose lookup at the depth stamp, refusals, ESDF, persistence, thread safety."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from depth_nodes.camera import PinholeCamera
from depth_nodes.geometry import R_BODY_OPTICAL, make_pose, pose_from_xyz_yaw
from depth_nodes.mapping.config import TsdfConfig
from depth_nodes.mapping.mapper import Mapper
from depth_nodes.mapping.synthetic import Plane, Scene

CAM = PinholeCamera.from_fov(96, 72, 90.0)
T_BODY_CAM = make_pose(R_BODY_OPTICAL, [0.08, 0.0, 0.0])
WALL_X = 3.03
SCENE = Scene(planes=[Plane((WALL_X, 0.0, 0.0), (-1.0, 0.0, 0.0))])


def body(x: float) -> np.ndarray:
    return pose_from_xyz_yaw([x, 0.0, 1.5], 0.0)


def depth_at(x: float) -> np.ndarray:
    return SCENE.render_depth(CAM, body(x) @ T_BODY_CAM)


def make_mapper(**kw) -> Mapper:
    return Mapper(TsdfConfig(voxel_size=0.1, sdf_trunc=0.3, **kw), T_BODY_CAM)


def wall_x_of(m: Mapper) -> float:
    pts, _, _ = m.surface_points()
    assert len(pts) > 50
    return float(np.median(pts[:, 0]))


def test_integrates_at_interpolated_pose_with_extrinsic():
    m = make_mapper()
    m.add_odometry(10.0, body(0.0))
    m.add_odometry(11.0, body(1.0))
    # frame taken half way: rendered from x = 0.5; a nearest/zero-order lookup would misplace the wall by 0.5 m
    r = m.integrate(10.5, depth_at(0.5), CAM)
    assert r.accepted, r.reason
    assert abs(wall_x_of(m) - WALL_X) < 0.12
    assert np.allclose(m.camera_pose(10.5)[:3, 3], [0.58, 0.0, 1.5])


def test_refuses_extrapolation_and_empty_buffer():
    m = make_mapper()
    r = m.integrate(1.0, depth_at(0.0), CAM)
    assert not r.accepted and "no pose" in r.reason
    m.add_odometry(1.0, body(0.0))
    r = m.integrate(3.0, depth_at(0.0), CAM)
    assert not r.accepted and "outside the buffered span" in r.reason
    assert m.awaits_odometry(3.0) and not m.awaits_odometry(1.04)  # a later sample could bracket 3.0
    s = m.stats()
    assert s["frames_refused_no_pose"] == 2 and s["blocks"] == 0 and s["frames_integrated"] == 0


def test_invalid_frames_leave_map_unchanged():
    m = make_mapper()
    m.add_odometry(0.0, body(0.0))
    assert m.integrate(0.0, depth_at(0.0), CAM).accepted
    before = m.stats()["blocks"]
    r = m.integrate(0.0, np.full((72, 96), np.nan, np.float32), CAM)
    assert not r.accepted
    r = m.integrate(0.0, np.ones((10, 10), np.float32), CAM)
    assert not r.accepted
    s = m.stats()
    assert s["blocks"] == before and s["frames_rejected"] == 2 and s["frames_integrated"] == 1
    with pytest.raises(ValueError):
        m.add_odometry(float("nan"), body(0.0))


def test_esdf_window_near_wall_and_free_at_vehicle():
    m = make_mapper()
    m.add_odometry(0.0, body(0.0))
    for _ in range(2):
        assert m.integrate(0.0, depth_at(0.0), CAM).accepted
    g = m.esdf([1.5, 0.0, 1.5], (2.5, 1.0, 0.5), max_distance_m=1.0)
    d, known = g.query(np.array([[WALL_X - 0.05, 0.0, 1.5], [1.0, 0.0, 1.5]]))
    assert d[0] < 0.2
    assert d[1] == pytest.approx(1.0)
    assert known[1]


def test_save_clear_load_roundtrip(tmp_path):
    m = make_mapper()
    m.add_odometry(0.0, body(0.0))
    assert m.integrate(0.0, depth_at(0.0), CAM).accepted
    n = len(m.surface_points()[0])
    path = tmp_path / "map.npz"
    m.save(path)
    m.clear()
    assert len(m.surface_points()[0]) == 0
    m.load(path)
    assert len(m.surface_points()[0]) == n
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError):
        m.load(bad)
    assert len(m.surface_points()[0]) == n  # failed load keeps the map


def test_concurrent_integrate_esdf_and_views():
    m = make_mapper()
    for i in range(11):
        m.add_odometry(float(i) * 0.1, body(0.1 * i))
    errors: list[BaseException] = []

    def run(fn):
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    def integrator():
        for i in range(10):
            assert m.integrate(0.1 * i, depth_at(0.1 * i), CAM).accepted

    def planner():
        for _ in range(10):
            g = m.esdf([1.0, 0.0, 1.5], (2.5, 1.0, 0.5))
            assert g.shape[0] > 0

    def viewer():
        for _ in range(5):
            m.surface_points()
            m.stats()

    threads = [threading.Thread(target=run, args=(f,)) for f in (integrator, planner, viewer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert m.stats()["frames_integrated"] == 10
    assert abs(wall_x_of(m) - WALL_X) < 0.12


def test_check_map_path(tmp_path):
    from depth_nodes.mapping.mapper import check_map_path

    assert check_map_path(str(tmp_path / "m.npz")) == tmp_path / "m.npz"
    for bad, match in ((tmp_path / "m.txt", "npz"), (tmp_path / "nope" / "m.npz", "does not exist"),
                       (str(tmp_path) + "/m\n.npz", "control"), ("", "non-empty")):
        with pytest.raises(ValueError, match=match):
            check_map_path(bad)


def test_tracked_esdf_is_reused_while_it_covers_the_box_and_equals_a_fresh_one():
    m = make_mapper()
    half, max_d = np.array([3.0, 2.0, 1.0]), 1.0
    m.track_esdf(half, max_d, slack_m=0.4)
    for i, x in enumerate((0.0, 0.1, 0.2)):
        m.add_odometry(10.0 + i, body(x))
    assert m.integrate(11.0, depth_at(0.1), CAM).accepted
    cam_pos = m.camera_pose(11.0)[:3, 3]
    near = cam_pos + [0.3, -0.3, 0.2]
    grid, reused = m.esdf_near(near, half, max_d)
    assert reused and m.esdf_cache_hits == 1
    fresh = m.esdf(near, half, max_d)
    probe = near + np.random.default_rng(0).uniform(-half, half, (500, 3))
    d_cached, k_cached = grid.query(probe)
    d_fresh, k_fresh = fresh.query(probe)
    assert np.array_equal(k_cached, k_fresh) and np.array_equal(d_cached, d_fresh)
    assert k_fresh.any() and (d_fresh[k_fresh] < max_d).any()  # the wall is in the box
    # beyond the slack, or with another saturation distance: a fresh window
    _, reused = m.esdf_near(cam_pos + [0.6, 0.0, 0.0], half, max_d)
    assert not reused
    _, reused = m.esdf_near(cam_pos, half, 2.0)
    assert not reused and m.esdf_cache_misses == 2
    # clearing the map drops the window
    m.clear()
    grid, reused = m.esdf_near(cam_pos, half, max_d)
    assert not reused and not grid.query(probe)[1].any()
    with pytest.raises(ValueError, match="slack_m"):
        m.track_esdf(half, max_d, slack_m=-1.0)
    with pytest.raises(ValueError, match="half_extent"):
        m.track_esdf([1.0, 0.0, 1.0], max_d)
