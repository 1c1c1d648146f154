"""mono_depth_node and stereo_depth_node on real rclpy (in-process, one executor, no mocks)."""
from __future__ import annotations

import uuid

import cv2
import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from stereo_msgs.msg import DisparityImage

from depth_nodes.camera import PinholeCamera
from depth_nodes.depth import model_io
from depth_nodes.depth.model_io import default_weights
from depth_nodes.geometry import rot_to_quat
from depth_nodes.ros import mono_depth_node, stereo_depth_node
from depth_nodes.ros.conversions import (
    array_to_image_msg,
    cloud_to_xyz,
    depth_to_metres,
    pinhole_to_camera_info_msg,
    sec_to_stamp,
    stamp_to_ns,
    xyz_to_cloud_msg,
)
from depth_nodes.ros.node_base import SENSOR_QOS
from depth_nodes.sim.rig import SensorRig
from helpers_ros import spin_until

pytestmark = pytest.mark.dds

W, H = 64, 48
CAMERA = PinholeCamera.from_fov(W, H, 90.0)
FAST_NET = [Parameter("weights", value="random-init"), Parameter("allow_random_weights", value=True),
            Parameter("net_width", value=W), Parameter("net_height", value=H), Parameter("threads", value=1),
            Parameter("diagnostics_period_s", value=0.2)]


@pytest.fixture
def ns() -> str:
    """A namespace of its own, so concurrent DDS tests on this machine never cross-talk."""
    return f"/depth_test_{uuid.uuid4().hex[:10]}"


class Harness:
    """The node under test plus a helper node publishing inputs and recording every output."""

    def __init__(self, ctx, node, inputs: dict[str, type], outputs: dict[str, type]):
        self.node = node
        self.helper = rclpy.create_node("depth_test_helper", context=ctx, namespace=node.get_namespace())
        self.pubs = {t: self.helper.create_publisher(m, t, SENSOR_QOS) for t, m in inputs.items()}
        self.got: dict[str, list] = {t: [] for t in outputs}
        for t, m in outputs.items():
            qos = 10 if m is DiagnosticArray else SENSOR_QOS
            self.helper.create_subscription(m, t, self.got[t].append, qos)
        self.ex = SingleThreadedExecutor(context=ctx)
        self.ex.add_node(node)
        self.ex.add_node(self.helper)

    def publish(self, **msgs) -> None:
        for topic, msg in msgs.items():
            self.pubs[topic.replace("__", "/")].publish(msg)

    def with_stamp(self, topic: str, stamp_ns: int) -> list:
        return [m for m in self.got[topic] if stamp_to_ns(m.header.stamp) == stamp_ns]

    def close(self) -> None:
        self.ex.shutdown()
        self.node.destroy_node()
        self.helper.destroy_node()


def textured_rgb(rng, width: int, height: int) -> np.ndarray:
    """Smoothed random texture (matchable by SGBM), uint8 RGB."""
    g = cv2.GaussianBlur(rng.integers(0, 256, (height, width), dtype=np.uint8), (0, 0), 1.0)
    return np.repeat(g[..., None], 3, axis=2)


def radar_msg(stamp) -> PointCloud2:
    xyz = np.array([[5.0, 0.5, 0.2], [8.0, -1.0, 0.0], [3.0, 0.0, -0.3]], np.float32)  # radar frame, x fwd
    extra = {"velocity": np.zeros(3, np.float32), "intensity": np.full(3, 10.0, np.float32)}
    return xyz_to_cloud_msg(xyz, extra, stamp=stamp, frame_id="radar")


def diag_status(h: Harness) -> DiagnosticStatus | None:
    """The newest diagnostics status published by the node under test."""
    mine = [s for m in h.got["diagnostics"] for s in m.status if s.name == h.node.get_fully_qualified_name()]
    return mine[-1] if mine else None


def diag_values(h: Harness) -> dict[str, str]:
    status = diag_status(h)
    return {} if status is None else {kv.key: kv.value for kv in status.values}


def test_default_radar_extrinsic_is_the_sim_rig():
    T = SensorRig().T_camera_radar
    xyzq = dict((p.name, p.default) for p in mono_depth_node.PARAMS)["radar_to_camera_xyz_qxyzw"]
    np.testing.assert_allclose(xyzq[:3], T[:3, 3], atol=1e-9)
    np.testing.assert_allclose(xyzq[3:], rot_to_quat(T[:3, :3]), atol=1e-9)


def test_mono_node_publishes_depth_and_rejects_bad_images(ctx, ns, rng):
    node = mono_depth_node.MonoDepthNode(context=ctx, namespace=ns, parameter_overrides=FAST_NET)
    h = Harness(ctx, node, {"camera/image_raw": Image, "camera/camera_info": CameraInfo, "radar/points": PointCloud2},
                {"depth/image": Image, "depth/confidence": Image, "depth/camera_info": CameraInfo,
                 "depth/points": PointCloud2, "diagnostics": DiagnosticArray})
    try:
        assert node.estimator is not None and node.estimator.weights_status == "random-init"
        rgb = textured_rgb(rng, W, H)
        stamp = sec_to_stamp(100.25)
        t_ns = stamp_to_ns(stamp)
        image = array_to_image_msg(rgb, "rgb8", stamp=stamp, frame_id="camera_optical_frame")

        def send_good():
            h.publish(camera__camera_info=pinhole_to_camera_info_msg(CAMERA, stamp=stamp),
                      radar__points=radar_msg(stamp), camera__image_raw=image)

        assert spin_until(h.ex, lambda: h.with_stamp("depth/points", t_ns) and h.with_stamp("depth/camera_info", t_ns),
                          timeout_s=20.0, tick=send_good), "no depth output"
        depth_msg = h.with_stamp("depth/image", t_ns)[0]
        assert (depth_msg.encoding, depth_msg.width, depth_msg.height) == ("32FC1", W, H)
        assert depth_msg.header.frame_id == "camera_optical_frame"
        depth = depth_to_metres(depth_msg)
        assert np.isfinite(depth).mean() > 0.5 and np.nanmin(depth) > 0
        conf = h.with_stamp("depth/confidence", t_ns)[0]
        assert (conf.encoding, conf.width, conf.height) == ("32FC1", W, H)
        info = h.with_stamp("depth/camera_info", t_ns)[0]
        assert (info.width, info.height) == (W, H)
        np.testing.assert_allclose(np.asarray(info.k), CAMERA.K.ravel())
        cloud = h.with_stamp("depth/points", t_ns)[0]
        assert cloud.header.frame_id == "camera_optical_frame"
        assert [f.name for f in cloud.fields] == ["x", "y", "z"]
        pts = cloud_to_xyz(cloud)
        stride = node.param("points_stride")
        assert 0 < len(pts) <= ((W + stride - 1) // stride) * ((H + stride - 1) // stride)
        assert np.all(pts[:, 2] > 0)
        assert len(node.radar) > 0  # radar clouds were decoded and kept for matching

        # Bad images: wrong size vs camera_info, unknown encoding. Rejected, counted, node alive.
        small = array_to_image_msg(textured_rgb(rng, W // 2, H // 2), "rgb8", stamp=sec_to_stamp(101.0))
        odd = array_to_image_msg(rgb[..., 0], "8UC1", stamp=sec_to_stamp(101.5))
        odd.encoding = "yuv9"
        for bad, count in ((small, 1), (odd, 2)):
            assert spin_until(h.ex, lambda: node.rejections.total("camera/image_raw") >= count, timeout_s=10.0,
                              tick=lambda: h.publish(camera__image_raw=bad))
        assert not h.with_stamp("depth/image", stamp_to_ns(small.header.stamp))
        reasons = [r for (t, r) in node.rejections.counts if t == "camera/image_raw"]
        assert any(f"{W // 2}x{H // 2} does not match camera_info {W}x{H}" in r for r in reasons), reasons
        assert any("yuv9" in r for r in reasons), reasons

        stamp2 = sec_to_stamp(102.0)
        good2 = array_to_image_msg(rgb, "rgb8", stamp=stamp2, frame_id="camera_optical_frame")
        assert spin_until(h.ex, lambda: h.with_stamp("depth/image", stamp_to_ns(stamp2)), timeout_s=20.0,
                          tick=lambda: h.publish(camera__image_raw=good2)), "good input after bad not processed"
        assert spin_until(h.ex, lambda: int(diag_values(h).get("rejected/camera/image_raw", 0)) >= 2
                          and int(diag_values(h).get("frames_processed", 0)) >= 2, timeout_s=10.0), diag_values(h)
        assert "frames_dropped" in diag_values(h)
        assert diag_values(h)["network_input"] == f"{W}x{H}"  # net_width/net_height as set
        assert diag_status(h).level == DiagnosticStatus.WARN  # untrained weights are flagged
    finally:
        h.close()


def test_mono_node_without_weights_stays_up_and_reports_error(ctx, ns, tmp_path, rng):
    missing = tmp_path / "mono_radar_missing.safetensors"
    overrides = [Parameter("weights", value=str(missing)), Parameter("diagnostics_period_s", value=0.1)]
    node = mono_depth_node.MonoDepthNode(context=ctx, namespace=ns, parameter_overrides=overrides)
    h = Harness(ctx, node, {"camera/image_raw": Image, "camera/camera_info": CameraInfo},
                {"depth/image": Image, "diagnostics": DiagnosticArray})
    try:
        assert node.estimator is None
        stamp = sec_to_stamp(5.0)
        image = array_to_image_msg(textured_rgb(rng, W, H), "rgb8", stamp=stamp)
        assert spin_until(h.ex, lambda: "rate_hz/camera/image_raw" in node.diagnostics_values()
                          and "rate_hz/camera/image_raw" in diag_values(h), timeout_s=10.0,
                          tick=lambda: h.publish(camera__camera_info=pinhole_to_camera_info_msg(CAMERA, stamp=stamp),
                                                 camera__image_raw=image))
        status = diag_status(h)
        assert status.level == DiagnosticStatus.ERROR
        assert missing.name in status.message
        assert not h.got["depth/image"]  # nothing from a network that is not there
    finally:
        h.close()


@pytest.mark.parametrize("weights, allow, expect", [
    ("random-init", False, "allow_random_weights"),
    ("model.pt", True, ".safetensors"),
])
def test_bad_weights_parameter_is_an_error_state(ctx, weights, allow, expect):
    node = mono_depth_node.MonoDepthNode(context=ctx, parameter_overrides=[
        Parameter("weights", value=weights), Parameter("allow_random_weights", value=allow)])
    try:
        assert node.estimator is None and node.status_level == DiagnosticStatus.ERROR
        assert expect in node.status_message
    finally:
        node.destroy_node()


def test_packaged_weights_missing_is_reported_with_the_file_name(ctx, tmp_path, monkeypatch):
    monkeypatch.setattr(model_io, "WEIGHTS_DIR", tmp_path)   # an install without the weights files
    packaged = default_weights("mono_radar")
    assert not packaged.exists()
    node = mono_depth_node.MonoDepthNode(context=ctx)
    try:
        assert node.status_level == DiagnosticStatus.ERROR and packaged.name in node.status_message
    finally:
        node.destroy_node()


def test_stereo_sgbm_depth_and_disparity(ctx, ns, rng):
    w, h_px, shift, baseline = 128, 96, 8, 0.1
    left_cam = PinholeCamera.from_fov(w, h_px, 90.0)
    right_cam = left_cam.with_baseline(baseline, frame_id="camera_right_optical_frame")
    tex = textured_rgb(rng, w + shift, h_px)
    left, right = np.ascontiguousarray(tex[:, :w]), np.ascontiguousarray(tex[:, shift:])  # right[x - d] = left[x]
    node = stereo_depth_node.StereoDepthNode(context=ctx, namespace=ns, parameter_overrides=[
        Parameter("backend", value="sgbm"), Parameter("threads", value=1)])
    h = Harness(ctx, node, {f"stereo/{s}/{t}": m for s in ("left", "right")
                            for t, m in (("image_rect", Image), ("camera_info", CameraInfo))},
                {"disparity": DisparityImage, "depth/image": Image, "depth/points": PointCloud2})
    try:
        stamp = sec_to_stamp(7.5)
        t_ns = stamp_to_ns(stamp)
        bad_right = PinholeCamera.from_fov(w, h_px, 90.0)  # P[0, 3] = 0: no baseline

        def send(right_info: PinholeCamera):
            h.publish(stereo__left__camera_info=pinhole_to_camera_info_msg(left_cam, stamp=stamp),
                      stereo__right__camera_info=pinhole_to_camera_info_msg(right_info, stamp=stamp),
                      stereo__left__image_rect=array_to_image_msg(left, "rgb8", stamp=stamp,
                                                                  frame_id="camera_optical_frame"),
                      stereo__right__image_rect=array_to_image_msg(right, "rgb8", stamp=stamp))

        assert spin_until(h.ex, lambda: node.rejections.total("stereo/right/camera_info") >= 1, timeout_s=10.0,
                          tick=lambda: send(bad_right))
        assert spin_until(h.ex, lambda: h.with_stamp("disparity", t_ns) and h.with_stamp("depth/image", t_ns),
                          timeout_s=20.0, tick=lambda: send(right_cam)), "no stereo output"
        disp_msg = h.with_stamp("disparity", t_ns)[0]
        assert disp_msg.f == pytest.approx(left_cam.fx) and disp_msg.t == pytest.approx(baseline)
        assert disp_msg.max_disparity > shift > disp_msg.min_disparity
        disp = depth_to_metres(disp_msg.image)  # 32FC1 -> float array (values are pixels here)
        win = disp_msg.valid_window
        assert win.width > w // 2 and win.height > h_px // 2
        inner = disp[win.y_offset:win.y_offset + win.height, win.x_offset:win.x_offset + win.width]
        assert np.nanmedian(inner[inner >= disp_msg.min_disparity]) == pytest.approx(shift, abs=0.25)

        depth = depth_to_metres(h.with_stamp("depth/image", t_ns)[0])
        valid = np.isfinite(depth)
        assert valid.mean() > 0.5
        expected = left_cam.fx * baseline / shift
        assert np.median(depth[valid]) == pytest.approx(expected, rel=0.03)
        assert np.mean(np.abs(depth[valid] - expected) < 0.05 * expected) > 0.9
    finally:
        h.close()


@pytest.mark.parametrize("backend,estimator,near_pass",
                         [("network", "stereo", None), ("hybrid", "stereo-hybrid", False)])
def test_stereo_network_backend_publishes_disparity_range_of_the_net(ctx, ns, rng, backend, estimator, near_pass):
    cam = PinholeCamera.from_fov(W, H, 90.0)
    right_cam = cam.with_baseline(0.12)
    near = [] if near_pass is None else [Parameter("near_pass", value=near_pass),
                                         Parameter("sgbm_nearest_max_gap", value=8.0)]
    node = stereo_depth_node.StereoDepthNode(context=ctx, namespace=ns, parameter_overrides=FAST_NET + near + [
        Parameter("backend", value=backend), Parameter("max_disparity", value=32),
        Parameter("publish_points", value=False)])
    h = Harness(ctx, node, {"stereo/left/image_rect": Image, "stereo/right/image_rect": Image,
                            "stereo/left/camera_info": CameraInfo, "stereo/right/camera_info": CameraInfo},
                {"disparity": DisparityImage, "depth/image": Image})
    try:
        assert node.estimator is not None and node.estimator.name == estimator
        assert node.estimator.near_pass is (near_pass is None)  # on unless the parameter says false
        assert getattr(node.estimator, "refiner", None) is None  # refine: false by default
        if backend == "hybrid":
            assert node.estimator.nearest_max_gap == 8.0
        stamp = sec_to_stamp(3.0)
        img = textured_rgb(rng, W, H)

        def send():
            h.publish(stereo__left__camera_info=pinhole_to_camera_info_msg(cam, stamp=stamp),
                      stereo__right__camera_info=pinhole_to_camera_info_msg(right_cam, stamp=stamp),
                      stereo__left__image_rect=array_to_image_msg(img, "rgb8", stamp=stamp),
                      stereo__right__image_rect=array_to_image_msg(img, "rgb8", stamp=stamp))

        t_ns = stamp_to_ns(stamp)
        assert spin_until(h.ex, lambda: h.with_stamp("disparity", t_ns) and h.with_stamp("depth/image", t_ns),
                          timeout_s=20.0, tick=send)
        d = h.with_stamp("disparity", t_ns)[0]
        assert d.max_disparity == pytest.approx(32.0) and d.t == pytest.approx(0.12)
        assert (d.image.width, d.image.height, d.image.encoding) == (W, H, "32FC1")
        assert node.pub_points is None
    finally:
        h.close()


def test_cuda_request_falls_back_to_cpu(ctx):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available: no fallback to test")
    node = mono_depth_node.MonoDepthNode(context=ctx, parameter_overrides=FAST_NET + [
        Parameter("device", value="cuda"), Parameter("mode", value="mono")])
    try:
        assert node.estimator is not None and node.estimator.device == "cpu"
        assert node.diagnostics_values()["device"] == "cpu"
    finally:
        node.destroy_node()


def test_mono_node_holds_an_image_for_its_radar_scan(ctx, ns, rng):
    """radar_wait_s: an image whose scan is due waits for it (arrival order does not matter); one whose
    scan is here goes at once; a scan that never comes releases the image after the wait."""
    node = mono_depth_node.MonoDepthNode(context=ctx, namespace=ns, parameter_overrides=FAST_NET + [
        Parameter("radar_wait_s", value=5.0)])
    h = Harness(ctx, node, {"camera/image_raw": Image, "camera/camera_info": CameraInfo, "radar/points": PointCloud2},
                {"depth/image": Image})
    submitted: list[tuple[int, object]] = []
    submit = node.submit
    node.submit = lambda header, inp: (submitted.append((stamp_to_ns(header.stamp), inp.radar)), submit(header, inp))

    def scan(t: float) -> PointCloud2:  # one point straight ahead, at a range that names the scan
        xyz = np.array([[10.0 * t - 95.0, 0.0, 0.0]], np.float32)
        return xyz_to_cloud_msg(xyz, {"velocity": np.zeros(1, np.float32), "intensity": np.ones(1, np.float32)},
                                stamp=sec_to_stamp(t), frame_id="radar")

    def image(t: float) -> Image:
        return array_to_image_msg(textured_rgb(rng, W, H), "rgb8", stamp=sec_to_stamp(t), frame_id="cam")

    def ranges(k: int) -> float:  # camera z of the scan paired with submitted image k
        return float(np.asarray(submitted[k][1])[0, 2])

    try:
        h.publish(camera__camera_info=pinhole_to_camera_info_msg(CAMERA, stamp=sec_to_stamp(10.0)))
        assert spin_until(h.ex, lambda: node.camera is not None, timeout_s=10.0)
        for t in (10.0, 10.1):
            h.publish(radar__points=scan(t))
        assert spin_until(h.ex, lambda: len(node.radar) == 2, timeout_s=10.0)
        # the image of 10.2 comes before its scan: held
        h.publish(camera__image_raw=image(10.2))
        assert spin_until(h.ex, lambda: node._held is not None, timeout_s=10.0)
        spin_until(h.ex, lambda: False, timeout_s=0.3)
        assert submitted == []
        h.publish(radar__points=scan(10.2))
        assert spin_until(h.ex, lambda: len(submitted) == 1, timeout_s=3.0)
        assert submitted[0][0] == stamp_to_ns(sec_to_stamp(10.2))
        assert ranges(0) == pytest.approx(7.0, abs=0.1)  # the scan of 10.2 (10.1's reads 6 m)
        # scan first, then the image: no wait (the wait would be 5 s)
        h.publish(radar__points=scan(10.3))
        assert spin_until(h.ex, lambda: len(node.radar) == 4, timeout_s=10.0)
        h.publish(camera__image_raw=image(10.3))
        assert spin_until(h.ex, lambda: len(submitted) == 2, timeout_s=3.0)
        assert ranges(1) == pytest.approx(8.0, abs=0.1)
        # a newer image releases a held one with what has arrived
        h.publish(camera__image_raw=image(10.4))
        assert spin_until(h.ex, lambda: node._held is not None, timeout_s=10.0)
        h.publish(camera__image_raw=image(10.5))
        assert spin_until(h.ex, lambda: len(submitted) == 3, timeout_s=3.0)
        assert submitted[2][0] == stamp_to_ns(sec_to_stamp(10.4)) and ranges(2) == pytest.approx(8.0, abs=0.1)
        assert node._held is not None and node._held[1] == stamp_to_ns(sec_to_stamp(10.5))
        assert node.radar_wait_timeouts == 0
    finally:
        h.close()


def test_mono_node_releases_a_held_image_after_the_wait(ctx, ns, rng):
    node = mono_depth_node.MonoDepthNode(context=ctx, namespace=ns, parameter_overrides=FAST_NET + [
        Parameter("radar_wait_s", value=0.2)])
    h = Harness(ctx, node, {"camera/image_raw": Image, "camera/camera_info": CameraInfo, "radar/points": PointCloud2},
                {"depth/image": Image})
    try:
        h.publish(camera__camera_info=pinhole_to_camera_info_msg(CAMERA, stamp=sec_to_stamp(20.0)))
        assert spin_until(h.ex, lambda: node.camera is not None, timeout_s=10.0)
        for t in (20.0, 20.1):
            h.publish(radar__points=radar_msg(sec_to_stamp(t)))
        assert spin_until(h.ex, lambda: len(node.radar) == 2, timeout_s=10.0)
        stamp = sec_to_stamp(20.2)
        h.publish(camera__image_raw=array_to_image_msg(textured_rgb(rng, W, H), "rgb8", stamp=stamp))
        assert spin_until(h.ex, lambda: h.with_stamp("depth/image", stamp_to_ns(stamp)), timeout_s=20.0)
        assert node.radar_wait_timeouts == 1 and node._held is None
        assert node.frames_without_radar == 0  # paired with the scan of 20.1 (within radar_max_age_s)
    finally:
        h.close()


def test_mono_node_without_any_radar_waits_only_once(ctx, ns, rng):
    node = mono_depth_node.MonoDepthNode(context=ctx, namespace=ns, parameter_overrides=FAST_NET + [
        Parameter("radar_wait_s", value=0.2)])
    h = Harness(ctx, node, {"camera/image_raw": Image, "camera/camera_info": CameraInfo}, {"depth/image": Image})
    try:
        h.publish(camera__camera_info=pinhole_to_camera_info_msg(CAMERA, stamp=sec_to_stamp(30.0)))
        assert spin_until(h.ex, lambda: node.camera is not None, timeout_s=10.0)
        for k, t in enumerate((30.0, 30.1, 30.2)):
            stamp = sec_to_stamp(t)
            h.publish(camera__image_raw=array_to_image_msg(textured_rgb(rng, W, H), "rgb8", stamp=stamp))
            assert spin_until(h.ex, lambda: h.with_stamp("depth/image", stamp_to_ns(stamp)), timeout_s=20.0), k
        # the first image waited for a scan that never came; the others went at once, without radar
        assert node.radar_wait_timeouts == 1 and node.frames_without_radar == 3
    finally:
        h.close()


def test_mono_node_image_before_the_first_camera_info_waits_for_it(ctx, ns, rng):
    node = mono_depth_node.MonoDepthNode(context=ctx, namespace=ns, parameter_overrides=FAST_NET + [
        Parameter("mode", value="mono")])
    h = Harness(ctx, node, {"camera/image_raw": Image, "camera/camera_info": CameraInfo}, {"depth/image": Image})
    try:
        stamp = sec_to_stamp(40.0)
        h.publish(camera__image_raw=array_to_image_msg(textured_rgb(rng, W, H), "rgb8", stamp=stamp))
        assert spin_until(h.ex, lambda: node._early_image is not None, timeout_s=10.0)
        assert node.rejections.total("camera/image_raw") == 0
        h.publish(camera__camera_info=pinhole_to_camera_info_msg(CAMERA, stamp=stamp))
        assert spin_until(h.ex, lambda: h.with_stamp("depth/image", stamp_to_ns(stamp)), timeout_s=20.0)
        assert node._early_image is None and node.rejections.total("camera/image_raw") == 0
    finally:
        h.close()
