"""Shared math: poses, quaternions, REP-103 frames, pinhole camera, trajectory."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from depth_nodes import geometry as g
from depth_nodes.camera import PinholeCamera
from depth_nodes.trajectory import Trajectory

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


def random_rotation(rng) -> np.ndarray:
    q = rng.normal(size=4)
    return g.quat_to_rot(q / np.linalg.norm(q))


def test_optical_to_body_axes():
    # optical z (forward) is body x, optical x (right) is body -y, optical y (down) is body -z
    np.testing.assert_allclose(g.R_BODY_OPTICAL @ [0, 0, 1], [1, 0, 0])
    np.testing.assert_allclose(g.R_BODY_OPTICAL @ [1, 0, 0], [0, -1, 0])
    np.testing.assert_allclose(g.R_BODY_OPTICAL @ [0, 1, 0], [0, 0, -1])
    assert np.isclose(np.linalg.det(g.R_BODY_OPTICAL), 1.0)


@settings(max_examples=100, deadline=None)
@given(st.lists(finite, min_size=4, max_size=4).filter(lambda q: np.linalg.norm(q) > 1e-3))
def test_quaternion_round_trip(q):
    R = g.quat_to_rot(q)
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-9)
    np.testing.assert_allclose(g.quat_to_rot(g.rot_to_quat(R)), R, atol=1e-9)


def test_invert_and_transform(rng):
    T = g.make_pose(random_rotation(rng), rng.normal(size=3))
    np.testing.assert_allclose(g.invert_pose(T) @ T, np.eye(4), atol=1e-12)
    p = rng.normal(size=(10, 3))
    np.testing.assert_allclose(g.transform_points(g.invert_pose(T), g.transform_points(T, p)), p, atol=1e-12)


def test_interpolate_pose_midpoint():
    T0 = g.pose_from_xyz_yaw([0, 0, 0], 0.0)
    T1 = g.pose_from_xyz_yaw([2, 0, 0], np.pi / 2)
    Tm = g.interpolate_pose(T0, T1, 0.5)
    np.testing.assert_allclose(Tm[:3, 3], [1, 0, 0])
    assert np.isclose(g.rot_to_yaw(Tm[:3, :3]), np.pi / 4)


def test_check_pose_rejects_bad():
    with pytest.raises(ValueError, match="4x4"):
        g.check_pose(np.eye(3))
    bad = np.eye(4)
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        g.check_pose(bad)
    with pytest.raises(ValueError, match="orthonormal"):
        g.check_pose(np.diag([2.0, 1.0, 1.0, 1.0]))


def test_camera_projection_round_trip(rng):
    cam = PinholeCamera.from_fov(320, 240, 90.0)
    depth = rng.uniform(0.5, 20.0, size=(240, 320)).astype(np.float32)
    pts = cam.unproject(depth, keep_invalid=True).reshape(-1, 3)
    uv, z = cam.project(pts)
    vv, uu = np.mgrid[0:240, 0:320]
    np.testing.assert_allclose(uv[:, 0], uu.ravel(), atol=1e-3)
    np.testing.assert_allclose(uv[:, 1], vv.ravel(), atol=1e-3)
    np.testing.assert_allclose(z, depth.ravel(), rtol=1e-6)


def test_point_in_front_projects_to_centre_and_body_forward():
    cam = PinholeCamera.from_fov(321, 241, 90.0)
    # a point 5 m ahead of the body, seen by a camera looking along body +x
    T_world_cam = g.camera_pose_from_body(np.eye(4))
    p_cam = g.transform_points(g.invert_pose(T_world_cam), np.array([[5.0, 0.0, 0.0]]))
    uv, z = cam.project(p_cam)
    np.testing.assert_allclose(uv[0], [cam.cx, cam.cy], atol=1e-9)
    assert np.isclose(z[0], 5.0)
    # a point to the body's left (+y) lands in the left half of the image (u < cx)
    uv_left, _ = cam.project(g.transform_points(g.invert_pose(T_world_cam), np.array([[5.0, 1.0, 0.0]])))
    assert uv_left[0, 0] < cam.cx
    # a point above (+z) lands in the upper half (v < cy)
    uv_up, _ = cam.project(g.transform_points(g.invert_pose(T_world_cam), np.array([[5.0, 0.0, 1.0]])))
    assert uv_up[0, 1] < cam.cy


def test_camera_baseline_and_scaling():
    cam = PinholeCamera.from_fov(640, 480, 80.0)
    right = cam.with_baseline(0.1)
    assert np.isclose(right.baseline, 0.1)
    assert np.isclose(right.P[0, 3], -cam.fx * 0.1)
    half = cam.scaled(320, 240)
    assert np.isclose(half.fx, cam.fx / 2) and np.isclose(half.hfov_deg, cam.hfov_deg, atol=0.2)

    # a crop keeps the focal and baseline, narrows the view, and projects a point to the same
    # pixel minus the window's offset
    right_crop = right.cropped(40, 30, 400, 300)
    assert right_crop.size == (400, 300) and right_crop.fx == right.fx
    assert np.isclose(right_crop.baseline, 0.1) and right_crop.hfov_deg < right.hfov_deg
    pt = np.array([[0.3, -0.2, 4.0]])
    uv, _ = right.project(pt)
    uv_c, _ = right_crop.project(pt)
    assert np.allclose(uv_c, uv - [40, 30])
    with pytest.raises(ValueError, match="outside"):
        cam.cropped(600, 0, 100, 100)


@pytest.mark.parametrize("kw,match", [
    (dict(width=0, height=10, K=np.eye(3)), "size"),
    (dict(width=10, height=10, K=np.zeros(9)), "positive focal"),
    (dict(width=10, height=10, K=np.eye(2)), "9 elements"),
    (dict(width=10, height=10, K=np.eye(3), P=np.ones(5)), "12 elements"),
    (dict(width=99999, height=10, K=np.eye(3)), "size"),
])
def test_camera_rejects_bad(kw, match):
    with pytest.raises(ValueError, match=match):
        PinholeCamera(**kw)


def test_check_depth_marks_invalid_nan():
    cam = PinholeCamera.from_fov(4, 2, 90.0)
    d = cam.check_depth(np.array([[0.0, -1, np.inf, 2.0], [np.nan, 1, 1, 1]]))
    assert np.isnan(d[0, :3]).all() and d[0, 3] == 2.0 and np.isnan(d[1, 0])
    with pytest.raises(ValueError, match="does not match"):
        cam.check_depth(np.zeros((3, 4)))


def test_trajectory_sample_and_validation():
    t = np.array([0.0, 1.0, 2.0])
    pos = np.array([[0, 0, 1], [1, 0, 1], [2, 0, 1]], float)
    vel = np.tile([1.0, 0, 0], (3, 1))
    traj = Trajectory(t, pos, vel, np.zeros((3, 3)), np.zeros(3))
    p, v, _, yaw = traj.sample(0.5)
    np.testing.assert_allclose(p, [0.5, 0, 1])
    np.testing.assert_allclose(traj.sample(10.0)[0], [2, 0, 1])
    with pytest.raises(ValueError, match="increasing"):
        Trajectory(t[::-1], pos, vel, np.zeros((3, 3)), np.zeros(3))
    with pytest.raises(ValueError, match="pos"):
        Trajectory(t, pos[:2], vel, np.zeros((3, 3)), np.zeros(3))
    with pytest.raises(ValueError, match="non-finite"):
        Trajectory(t, pos, vel * np.nan, np.zeros((3, 3)), np.zeros(3))
