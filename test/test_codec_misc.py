"""depth_nodes.codec camera_info, pose and stamp codecs (duck-typed and rosbags messages)."""
from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace as NS

import numpy as np
import pytest
from helpers_codec import BAG, TYPESTORE, bag_header, value_error_or_result
from hypothesis import given, settings
from hypothesis import strategies as st

from depth_nodes.camera import PinholeCamera
from depth_nodes.codec import (
    array_to_twist_fields,
    camera_info_to_pinhole,
    matrix_to_pose_fields,
    pinhole_to_camera_info_fields,
    pose_msg_to_matrix,
    sec_to_stamp_fields,
    stamp_to_ns,
    stamp_to_sec,
    twist_msg_to_array,
)
from depth_nodes.geometry import make_pose, quat_to_rot

FUZZ = settings(max_examples=200, deadline=None)


def bag_roundtrip(msg):
    return TYPESTORE.deserialize_cdr(TYPESTORE.serialize_cdr(msg, msg.__msgtype__), msg.__msgtype__)


def stereo_right() -> PinholeCamera:
    cam = PinholeCamera.from_fov(640, 480, 87.0, D=np.array([0.1, -0.02, 0.001, 0.0, 0.003]),
                                 frame_id="right_optical")
    return cam.with_baseline(0.095)


def assert_same_camera(a: PinholeCamera, b: PinholeCamera) -> None:
    assert (a.width, a.height, a.frame_id, a.distortion_model) == (b.width, b.height, b.frame_id, b.distortion_model)
    for m in ("K", "D", "P", "R"):
        np.testing.assert_array_equal(getattr(a, m), getattr(b, m), err_msg=m)


def test_camera_info_round_trip_namespace_and_bag():
    cam = stereo_right()
    fields = pinhole_to_camera_info_fields(cam)
    ns = NS(header=NS(frame_id=cam.frame_id), **fields)
    assert_same_camera(camera_info_to_pinhole(ns), cam)
    cls = BAG["sensor_msgs/msg/CameraInfo"]
    roi = BAG["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    bag = bag_roundtrip(cls(header=bag_header(cam.frame_id), binning_x=0, binning_y=0, roi=roi, **fields))
    out = camera_info_to_pinhole(bag)
    assert_same_camera(out, cam)
    assert out.baseline == pytest.approx(0.095)


def test_camera_info_ros1_names_and_zero_p_r_defaults():
    K = [500.0, 0, 320, 0, 500, 240, 0, 0, 1]
    msg = NS(header=NS(frame_id=""), width=640, height=480, distortion_model="", D=[], K=K, R=[0.0] * 9, P=[0.0] * 12)
    cam = camera_info_to_pinhole(msg)
    assert cam.frame_id == "camera_optical_frame" and cam.distortion_model == "plumb_bob"
    np.testing.assert_array_equal(cam.R, np.eye(3))
    np.testing.assert_array_equal(cam.P[:, :3], cam.K)
    assert cam.baseline == 0.0


@pytest.mark.parametrize("change, match", [
    ({"k": [1.0] * 8}, "k must have 9 elements, got 8"),
    ({"p": [np.nan] * 12}, "p contains non-finite"),
    ({"d": ["a"]}, "d is not numeric"),
    ({"d": [0.0] * 20}, "d has 20 coefficients"),
    ({"width": 0}, "camera size 0x480"),
    ({"height": -4}, "height=-4 outside"),
    ({"k": [0.0] * 9}, "positive focal lengths"),
    ({"distortion_model": 3}, "distortion_model must be a str"),
])
def test_camera_info_rejects_bad_fields(change, match):
    fields = {**pinhole_to_camera_info_fields(stereo_right()), **change}
    with pytest.raises(ValueError, match=match):
        camera_info_to_pinhole(NS(header=NS(frame_id="c"), **fields))


def random_pose(rng) -> np.ndarray:
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    return make_pose(quat_to_rot(q), rng.normal(size=3) * 5)


def test_pose_messages_of_every_shape_map_to_the_same_matrix(rng):
    T = random_pose(rng)
    f = matrix_to_pose_fields(T)
    point, quat = BAG["geometry_msgs/msg/Point"], BAG["geometry_msgs/msg/Quaternion"]
    pose = BAG["geometry_msgs/msg/Pose"](position=point(*f["position"]), orientation=quat(*f["orientation"]))
    stamped = BAG["geometry_msgs/msg/PoseStamped"](header=bag_header("map"), pose=pose)
    cov = BAG["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=np.zeros(36))
    vec = BAG["geometry_msgs/msg/Vector3"]
    twist = BAG["geometry_msgs/msg/Twist"](linear=vec(1.0, 2.0, 3.0), angular=vec(0.1, 0.2, 0.3))
    odom = BAG["nav_msgs/msg/Odometry"](
        header=bag_header("odom"), child_frame_id="base_link", pose=cov,
        twist=BAG["geometry_msgs/msg/TwistWithCovariance"](twist=twist, covariance=np.zeros(36)))
    transform = BAG["geometry_msgs/msg/TransformStamped"](
        header=bag_header("map"), child_frame_id="base_link",
        transform=BAG["geometry_msgs/msg/Transform"](translation=vec(*f["position"]), rotation=quat(*f["orientation"])))
    for msg in (pose, stamped, cov, odom, transform):
        np.testing.assert_allclose(pose_msg_to_matrix(bag_roundtrip(msg)), T, atol=1e-12)
    np.testing.assert_array_equal(twist_msg_to_array(bag_roundtrip(odom)), [1.0, 2.0, 3.0, 0.1, 0.2, 0.3])
    assert f["orientation"][3] >= 0


def test_pose_fields_and_twist_fields_round_trip(rng):
    T = random_pose(rng)
    f = matrix_to_pose_fields(T)
    ns = NS(position=NS(**dict(zip("xyz", f["position"]))), orientation=NS(**dict(zip("xyzw", f["orientation"]))))
    np.testing.assert_allclose(pose_msg_to_matrix(NS(pose=ns)), T, atol=1e-12)
    tw = array_to_twist_fields([1, 2, 3, 4, 5, 6])
    msg = NS(twist=NS(linear=NS(**dict(zip("xyz", tw["linear"]))), angular=NS(**dict(zip("xyz", tw["angular"])))))
    np.testing.assert_array_equal(twist_msg_to_array(msg), [1, 2, 3, 4, 5, 6])


@pytest.mark.parametrize("msg, match", [
    (NS(position=NS(x=0, y=0, z=0), orientation=NS(x=0, y=0, z=0, w=0)), "not normalised"),
    (NS(position=NS(x=0, y=0, z=0), orientation=NS(x=0, y=0, z=0, w=1.2)), r"\|q\|\^2=1.44"),
    (NS(position=NS(x=np.nan, y=0, z=0), orientation=NS(x=0, y=0, z=0, w=1)), "position must be finite"),
    (NS(position=NS(x=0, y=0), orientation=NS(x=0, y=0, z=0, w=1)), "numeric fields"),
    (NS(position=NS(x="a", y=0, z=0), orientation=NS(x=0, y=0, z=0, w=1)), "numeric fields"),
    (NS(header=None), "neither position/orientation"),
])
def test_pose_reader_rejects_bad_messages(msg, match):
    with pytest.raises(ValueError, match=match):
        pose_msg_to_matrix(msg)


def test_pose_and_twist_writers_reject_bad_values():
    with pytest.raises(ValueError, match="4x4"):
        matrix_to_pose_fields(np.eye(3))
    with pytest.raises(ValueError, match="orthonormal"):
        matrix_to_pose_fields(np.diag([2.0, 1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="twist must be 6 finite"):
        array_to_twist_fields([0, 0, 0, 0, 0, np.inf])
    with pytest.raises(ValueError, match="no twist"):
        twist_msg_to_array(NS(twist=NS(linear=NS(x=0, y=0, z=0))))


@FUZZ
@given(st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64), st.floats(-1.0, 1.0)),
                min_size=7, max_size=7))
def test_fuzz_pose_reader_returns_rigid_matrix_or_value_error(v):
    msg = NS(pose=NS(position=NS(x=v[0], y=v[1], z=v[2]), orientation=NS(x=v[3], y=v[4], z=v[5], w=v[6])))
    T = value_error_or_result(pose_msg_to_matrix, msg)
    if T is not None:
        assert np.isfinite(T).all()
        np.testing.assert_allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-6)


def test_stamps():
    assert stamp_to_ns(NS(sec=3, nanosec=5)) == 3_000_000_005
    assert stamp_to_sec(NS(stamp=NS(sec=1, nanosec=500_000_000))) == 1.5
    assert stamp_to_sec(bag_header()) == pytest.approx(1.000000002)
    assert sec_to_stamp_fields(-0.25) == (-1, 750_000_000)
    assert sec_to_stamp_fields(12.000000001) == (12, 1)
    for bad in (NS(sec=1, nanosec=10**9), NS(sec=1.5, nanosec=0), NS(sec=True, nanosec=0), NS()):
        with pytest.raises(ValueError, match="stamp"):
            stamp_to_ns(bad)
    with pytest.raises(ValueError, match="finite"):
        sec_to_stamp_fields(float("nan"))


def test_codec_imports_no_ros_packages():
    code = ("import sys, depth_nodes.codec; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('rclpy', 'sensor_msgs', 'std_msgs', 'geometry_msgs', 'nav_msgs', 'builtin_interfaces')); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
