"""mono_depth_node: camera (+ radar) -> metric depth with the mono+radar network.

Subscribes ``camera/image_raw`` (8-bit colour or mono), ``camera/camera_info``
(the latest one is used; the image size must match it) and ``radar/points``
(PointCloud2 x, y, z[, velocity, intensity] in the radar frame). Each image is
paired with the newest radar cloud stamped within ``radar_max_age_s`` of it
(the newest image received before the first camera info waits for it),
moved into the camera optical frame with the ``radar_to_camera_xyz_qxyzw``
extrinsic. With ``radar_wait_s`` > 0 an image whose radar scan is due (by the
scans' own interval; before two scans, any newer scan) but not yet received is
held that long for it, so a triggered rig pairs each image with its own scan
whatever the arrival order. After a wait that timed out before two scans came
(no radar at all) images are no longer held until scans arrive. Publishes
depth/image, depth/confidence, depth/camera_info and depth/points (see
:mod:`depth_nodes.ros.depth_node_base`).
"""
from __future__ import annotations

import sys
import time

from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from depth_nodes.camera import PinholeCamera
from depth_nodes.depth.interface import MAX_RADAR_POINTS, DepthInput
from depth_nodes.depth.radar_frame import radar_points_from_fields, radar_to_camera
from depth_nodes.geometry import pose_from_xyz_qxyzw
from depth_nodes.depth.stamp_match import StampedHistory
from depth_nodes.params import Param
from depth_nodes.ros.conversions import camera_info_to_pinhole, cloud_to_structured, image_to_rgb, stamp_to_ns
from depth_nodes.ros.depth_node_base import ESTIMATOR_PARAMS, DepthNodeBase, output_header
from depth_nodes.ros.node_base import SENSOR_QOS, run_node

NODE_NAME = "mono_depth_node"
#: Radar frames kept for matching to images (a few radar periods).
RADAR_HISTORY = 8
#: Wall period of the check that releases an image held for its radar scan (s).
RADAR_WAIT_POLL_S = 0.01

PARAMS: tuple[Param, ...] = ESTIMATOR_PARAMS + (
    Param("mode", "mono-radar", "Depth network input: mono-radar (image + radar) or mono (image only).",
          choices=("mono-radar", "mono")),
    Param("radar_max_age_s", 0.1, "Use the newest radar cloud stamped within this many seconds of the image.",
          0.0, 5.0),
    Param("radar_wait_s", 0.0, "Hold an image up to this many wall seconds while the radar scan due at its stamp "
          "(one scan interval after the newest) has not arrived; 0: pair at once with what has arrived. "
          "mav_nav.launch.py sets it for the lockstep simulator, whose camera and radar fire together.", 0.0, 5.0),
    # T_camera_radar of the default sim rig: invert(T_body_camera) @ T_body_radar.
    Param("radar_to_camera_xyz_qxyzw", [0.0, 0.04, 0.02, 0.5, -0.5, 0.5, 0.5],
          "Pose of the radar in the camera optical frame [x, y, z (m), qx, qy, qz, qw]."),
)


class MonoDepthNode(DepthNodeBase):
    """Image (+ radar) -> depth with one mono(-radar) network estimator."""

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, PARAMS, **kwargs)
        self.camera: PinholeCamera | None = None
        self.radar = StampedHistory(RADAR_HISTORY)
        self.frames_without_radar = 0
        self.radar_wait_timeouts = 0
        self._early_image: Image | None = None  # the newest image received before any camera info
        self._held: tuple | None = None  # (wall time held, stamp ns, header, rgb, camera) awaiting its radar scan
        # a wait timed out before two scans gave their interval (no radar at all?): no more such waits
        self._radar_interval_unknown_timed_out = False
        self.use_radar = self.param("mode") == "mono-radar"
        self.T_camera_radar = None
        try:
            self.T_camera_radar = pose_from_xyz_qxyzw(self.param("radar_to_camera_xyz_qxyzw"),
                                                      "radar_to_camera_xyz_qxyzw")
            net_size = self.net_size()
        except ValueError as exc:
            self.fail(str(exc))
        else:
            self.start_estimator(self.param("mode"), net_size=net_size)
        # subscribed only now: a node that shows its subscriptions can process what they bring (the
        # estimator's warm-up takes the CPU for a while, and a lockstep simulator starts on them)
        self.create_subscription(CameraInfo, "camera/camera_info", self.on_camera_info, SENSOR_QOS)
        self.create_subscription(Image, "camera/image_raw", self.on_image, SENSOR_QOS)
        if self.use_radar:
            self.create_subscription(PointCloud2, "radar/points", self.on_radar, SENSOR_QOS)
            if self.param("radar_wait_s") > 0:
                self.create_timer(RADAR_WAIT_POLL_S, self._release_if_waited)

    def on_camera_info(self, msg: CameraInfo) -> None:
        topic = "camera/camera_info"
        self.received(topic)
        try:
            self.camera = camera_info_to_pinhole(msg)
        except ValueError as exc:
            self.reject(topic, str(exc))
            return
        early, self._early_image = self._early_image, None
        if early is not None:
            self._take_image(early)

    def on_radar(self, msg: PointCloud2) -> None:
        topic = "radar/points"
        self.received(topic)
        if self.T_camera_radar is None:
            return  # invalid extrinsic: the node is in the ERROR state
        try:
            points = radar_points_from_fields(cloud_to_structured(msg, max_points=MAX_RADAR_POINTS))
            self.radar.add(stamp_to_ns(msg.header.stamp), radar_to_camera(points, self.T_camera_radar))
        except ValueError as exc:
            self.reject(topic, str(exc))
            return
        if self._held is not None and not self.radar.awaits(self._held[1]):
            self._release()

    def on_image(self, msg: Image) -> None:
        self.received("camera/image_raw")
        self._take_image(msg)

    def _take_image(self, msg: Image) -> None:
        topic = "camera/image_raw"
        cam = self.camera
        if cam is None:  # the newest image waits for the first camera info (separate streams)
            if self._early_image is not None:
                self.reject(topic, "no camera/camera_info received yet")
            self._early_image = msg
            return
        try:
            rgb = image_to_rgb(msg, self.param("max_image_side"))
            if (rgb.shape[1], rgb.shape[0]) != cam.size:
                raise ValueError(f"image size {rgb.shape[1]}x{rgb.shape[0]} does not match "
                                 f"camera_info {cam.width}x{cam.height}")
        except ValueError as exc:
            self.reject(topic, str(exc))
            return
        stamp = stamp_to_ns(msg.header.stamp)
        header = output_header(msg.header, cam)
        if self._held is not None:  # a newer image: the held one goes with what has arrived
            self._release()
        if self.use_radar and self.param("radar_wait_s") > 0 and self.radar.awaits(stamp) \
                and not (self._radar_interval_unknown_timed_out and len(self.radar) < 2):
            self._held = (time.monotonic(), stamp, header, rgb, cam)
            return
        self._submit_with_radar(stamp, header, rgb, cam)

    def _submit_with_radar(self, stamp: int, header, rgb, cam: PinholeCamera) -> None:
        radar = None
        if self.use_radar:
            match = self.radar.newest_within(stamp, int(self.param("radar_max_age_s") * 1e9))
            radar = None if match is None else match[1]
            self.frames_without_radar += int(match is None)
        self.submit(header, DepthInput(rgb, cam, radar))

    def _release(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            self._submit_with_radar(*held[1:])

    def _release_if_waited(self) -> None:
        if self._held is not None and time.monotonic() - self._held[0] >= self.param("radar_wait_s"):
            self.radar_wait_timeouts += 1
            self._radar_interval_unknown_timed_out |= len(self.radar) < 2
            self._release()

    def diagnostics_values(self) -> dict[str, str]:
        values = super().diagnostics_values()
        values["frames_without_radar"] = str(self.frames_without_radar)
        values["radar_wait_timeouts"] = str(self.radar_wait_timeouts)
        if self.estimator is not None and self.camera is not None:
            net = self.estimator.net_camera(self.camera)
            values["network_input"] = f"{net.width}x{net.height}"
        return values


def main(args=None) -> int:
    return run_node(lambda context: MonoDepthNode(context=context), args)


if __name__ == "__main__":
    sys.exit(main())
