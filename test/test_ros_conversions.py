"""depth_nodes.ros.conversions with real rclpy messages (built, serialised as on the wire, read back)."""
from __future__ import annotations

import array
from types import SimpleNamespace

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Odometry
from rclpy.serialization import deserialize_message, serialize_message
from rclpy.time import Time as RclpyTime
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header

from depth_nodes.camera import PinholeCamera
from depth_nodes.geometry import make_pose, quat_to_rot
from depth_nodes.ros import conversions as conv


def wire(msg):
    """The message as a subscriber receives it (CDR serialise + deserialise)."""
    return deserialize_message(serialize_message(msg), type(msg))


IMAGE_CASES = [
    ("rgb8", np.uint8, 3), ("bgr8", np.uint8, 3), ("rgba8", np.uint8, 4), ("bgra8", np.uint8, 4),
    ("mono8", np.uint8, 1), ("mono16", np.uint16, 1), ("16UC1", np.uint16, 1), ("32FC1", np.float32, 1),
    ("8UC3", np.uint8, 3), ("16SC1", np.int16, 1),
]


def random_image(rng, dtype, channels, h=37, w=53):
    shape = (h, w) if channels == 1 else (h, w, channels)
    if np.dtype(dtype).kind == "f":
        return rng.uniform(0.1, 30.0, shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


@pytest.mark.parametrize("encoding, dtype, channels", IMAGE_CASES)
def test_image_msg_round_trip_through_the_wire(rng, encoding, dtype, channels):
    img = random_image(rng, dtype, channels)
    msg = conv.array_to_image_msg(img, encoding, stamp=12.25, frame_id="cam_optical")
    assert isinstance(msg, Image) and isinstance(msg.data, array.array) and msg.data.typecode == "B"
    assert len(msg.data) == msg.step * msg.height and msg.encoding == encoding
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (12, 250_000_000, "cam_optical")
    for m in (msg, wire(msg)):
        np.testing.assert_array_equal(conv.image_to_array(m), img)


def test_image_to_array_is_a_view_of_the_rclpy_buffer(rng):
    msg = wire(conv.array_to_image_msg(random_image(rng, np.uint8, 3), "rgb8"))
    view = conv.image_to_array(msg)
    msg.data[0] = (int(view[0, 0, 0]) + 1) % 256
    assert view[0, 0, 0] == msg.data[0]


def test_image_msg_owns_its_data(rng):
    img = random_image(rng, np.float32, 1)
    msg = conv.array_to_image_msg(img, "32FC1")
    img[:] = -1.0
    assert conv.image_to_array(msg).min() > 0


def test_depth_messages_to_metres(rng):
    mm = rng.integers(0, 5000, (20, 30), dtype=np.uint16)
    out = conv.depth_to_metres(wire(conv.array_to_image_msg(mm, "16UC1")))
    np.testing.assert_array_equal(np.isnan(out), mm == 0)
    np.testing.assert_allclose(out[mm > 0], mm[mm > 0] * 1e-3, rtol=1e-6)
    m = rng.uniform(0.5, 10, (20, 30)).astype(np.float32)
    m[3, 4] = np.nan
    out = conv.depth_to_metres(wire(conv.array_to_image_msg(m, "32FC1")))
    np.testing.assert_array_equal(out, m)


def test_hand_built_rclpy_messages_with_padding_and_errors():
    img = np.arange(12, dtype=np.uint16).reshape(3, 4)
    rows = np.zeros((3, 10), np.uint8)
    rows[:, :8] = img.astype(">u2").view(np.uint8)
    msg = Image(height=3, width=4, encoding="16UC1", is_bigendian=1, step=10, data=rows.tobytes())
    np.testing.assert_array_equal(conv.image_to_array(wire(msg)), img)
    msg.step = 7
    with pytest.raises(ValueError, match="step=7"):
        conv.image_to_array(msg)
    with pytest.raises(ValueError, match="height=0"):
        conv.image_to_array(Image(encoding="mono8"))


def test_headers_and_stamps():
    t = Time(sec=5, nanosec=7)
    assert conv.make_header(t, "a").stamp == t
    assert conv.make_header(RclpyTime(seconds=2, nanoseconds=3).to_msg()).stamp.sec == 2
    assert conv.make_header(RclpyTime(nanoseconds=1_500_000_000)).stamp == Time(sec=1, nanosec=500_000_000)
    h = Header(frame_id="given")
    assert conv.make_header(3.0, "ignored", header=h) is h
    assert conv.stamp_to_sec(conv.sec_to_stamp(1234.5)) == 1234.5
    assert conv.stamp_to_sec(conv.make_header(0.25)) == 0.25
    assert conv.make_header(SimpleNamespace(sec=4, nanosec=9)).stamp == Time(sec=4, nanosec=9)
    with pytest.raises(ValueError, match="stamp"):
        conv.make_header("soon")


def test_camera_info_msg_round_trip():
    cam = PinholeCamera.from_fov(848, 480, 87.0, frame_id="right_optical").with_baseline(0.05)
    msg = conv.pinhole_to_camera_info_msg(cam, stamp=3.0)
    assert isinstance(msg, CameraInfo) and msg.header.frame_id == "right_optical"
    out = conv.camera_info_to_pinhole(wire(msg))
    np.testing.assert_array_equal(out.K, cam.K)
    np.testing.assert_array_equal(out.P, cam.P)
    assert out.baseline == pytest.approx(0.05) and out.size == (848, 480)


def test_cloud_msgs_round_trip(rng):
    pts = rng.normal(size=(4, 25, 3)).astype(np.float32)
    pts[0, 0] = np.nan
    ring = np.repeat(np.arange(4, dtype=np.uint16)[:, None], 25, axis=1)
    msg = conv.xyz_to_cloud_msg(pts, {"ring": ring}, frame_id="lidar", stamp=1.0)
    assert isinstance(msg, PointCloud2) and not msg.is_dense and (msg.height, msg.width) == (4, 25)
    assert [(f.name, f.datatype) for f in msg.fields] == [("x", 7), ("y", 7), ("z", 7), ("ring", PointField.UINT16)]
    back = wire(msg)
    np.testing.assert_array_equal(conv.cloud_to_xyz(back, skip_nans=False), pts.reshape(-1, 3))
    assert conv.cloud_to_xyz(back).shape == (99, 3)
    np.testing.assert_array_equal(conv.cloud_to_structured(back, keep_organized=True)["ring"], ring)
    arr = np.zeros(10, dtype={"names": ["x", "y", "z", "rgb"], "formats": ["f8", "f8", "f8", "u4"],
                              "offsets": [0, 8, 16, 28], "itemsize": 32})
    arr["x"] = np.arange(10)
    out = conv.cloud_to_structured(wire(conv.structured_to_cloud_msg(arr)))
    assert out.dtype == arr.dtype
    np.testing.assert_array_equal(out["x"], arr["x"])


def test_pose_msgs_round_trip(rng):
    q = rng.normal(size=4)
    T = make_pose(quat_to_rot(q / np.linalg.norm(q)), [1.0, -2.0, 0.5])
    ps = conv.pose_to_pose_stamped_msg(T, stamp=2.0)
    assert isinstance(ps, PoseStamped) and ps.header.frame_id == "map"
    np.testing.assert_allclose(conv.pose_msg_to_matrix(wire(ps)), T, atol=1e-12)
    odom = conv.pose_to_odometry_msg(T, [0.5, 0, 0, 0, 0, 0.1], stamp=2.0)
    assert isinstance(odom, Odometry) and (odom.header.frame_id, odom.child_frame_id) == ("odom", "base_link")
    back = wire(odom)
    np.testing.assert_allclose(conv.pose_msg_to_matrix(back), T, atol=1e-12)
    np.testing.assert_array_equal(conv.twist_msg_to_array(back), [0.5, 0, 0, 0, 0, 0.1])
    with pytest.raises(ValueError, match="twist"):
        conv.pose_to_odometry_msg(T, [1.0, 2.0])


CV_BRIDGE_CASES = [("rgb8", np.uint8, 3), ("bgr8", np.uint8, 3), ("mono8", np.uint8, 1), ("mono16", np.uint16, 1),
                   ("16UC1", np.uint16, 1), ("32FC1", np.float32, 1), ("bgra8", np.uint8, 4)]


def test_agrees_with_cv_bridge(rng):
    try:
        from cv_bridge import CvBridge
    except ImportError:
        pytest.skip("cv_bridge (from a sourced ROS 2 install) not available")
    bridge = CvBridge()
    for encoding, dtype, channels in CV_BRIDGE_CASES:
        img = random_image(rng, dtype, channels)
        ours = conv.array_to_image_msg(img, encoding)
        np.testing.assert_array_equal(bridge.imgmsg_to_cv2(ours, desired_encoding="passthrough"), img)
        theirs = bridge.cv2_to_imgmsg(img, encoding=encoding)
        np.testing.assert_array_equal(conv.image_to_array(theirs), img)
        assert (theirs.step, theirs.height, theirs.width) == (ours.step, ours.height, ours.width)


def test_bench_conversions_cli_prints_one_json_object(capsys):
    import json

    from depth_nodes.cli import main

    assert main(["bench", "conversions", "--json", "--repeat", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("image_to_array_mb_s", "image_to_array_rgb8_mb_s", "image_to_array_32fc1_mb_s",
                "array_to_image_mb_s", "cloud_xyz_100k_ms", "xyz_to_cloud_100k_ms"):
        assert out[key] > 0, key
    assert out["run_info"]["cloud_points"] == 100_000 and out["run_info"]["seed"] == 0
