"""stereo_depth_node: rectified stereo pair -> disparity and metric depth.

Subscribes ``stereo/left/image_rect``, ``stereo/left/camera_info``,
``stereo/right/image_rect`` and ``stereo/right/camera_info`` (latest infos are
used; the right one carries the baseline as ``P[0, 3] = -fx * B``, B > 0).
Left and right images are paired by exactly equal stamps (small bounded
buffer, newest pair wins). ``backend``: ``network`` (stereo network),
``sgbm`` (OpenCV semi-global matching, no weights) or ``hybrid`` (SGBM where it
finds a match, the network in its holes). Publishes ``disparity``
(stereo_msgs/DisparityImage, f = fx, T = baseline, invalid pixels below
min_disparity) plus depth/image, depth/confidence, depth/camera_info and
depth/points (see :mod:`depth_nodes.ros.depth_node_base`).
"""
from __future__ import annotations

import sys

from sensor_msgs.msg import CameraInfo, Image, RegionOfInterest
from stereo_msgs.msg import DisparityImage

from depth_nodes.camera import PinholeCamera
from depth_nodes.depth.disparity_image import disparity_image, disparity_range, valid_window
from depth_nodes.depth.interface import DepthInput, DepthOutput
from depth_nodes.depth.stamp_match import ExactStampPairer
from depth_nodes.params import Param
from depth_nodes.ros.conversions import array_to_image_msg, camera_info_to_pinhole, image_to_rgb, stamp_to_ns
from depth_nodes.ros.depth_node_base import ESTIMATOR_PARAMS, DepthNodeBase, PendingFrame, output_header
from depth_nodes.ros.node_base import SENSOR_QOS, run_node

NODE_NAME = "stereo_depth_node"
#: backend parameter -> estimator mode
BACKEND_MODES = {"network": "stereo", "sgbm": "sgbm", "hybrid": "stereo-hybrid"}
#: Unpaired images kept per side while waiting for the other side.
PAIR_BUFFER = 4
SIDES = ("left", "right")

PARAMS: tuple[Param, ...] = ESTIMATOR_PARAMS + (
    Param("backend", "network", "Stereo matcher: network (trained stereo net), sgbm (OpenCV, no weights) or "
          "hybrid (SGBM where it finds a match, the network in its holes).", choices=tuple(BACKEND_MODES)),
    Param("max_disparity", 0, "Disparity search range in pixels (0 = default: the network's trained range; "
          "SGBM width/8). Network: multiple of 4 at network resolution; SGBM: multiple of 16.", 0, 1024),
    Param("sgbm_passes", 2, "SGBM (sgbm and hybrid backends): matching passes averaged against OpenCV's pull "
          "toward whole-pixel disparities (each phase-shifted) and its top-down path bias (every other pass "
          "upside down); the sgbm backend keeps only pixels where all passes agree. Each pass costs one more "
          "matching (1: plain).", 1, 8),
    Param("near_pass", True, "Also match the pair at half resolution, which reaches twice the disparity, for "
          "surfaces nearer than the full-resolution search range covers (network and hybrid: the network, about "
          "a quarter more of its time; sgbm: SGBM, about a third more)."),
    Param("sgbm_texture_min", 0.0, "Hybrid backend: drop SGBM's match where the left image's horizontal texture "
          "(mean |Sobel x| of the grey image, 0-255 scale, over twice SGBM's block) is below this and take the "
          "network's there: SGBM carries disparities into skies and blank walls from their edges. 0: keep every "
          "match.", 0.0, 255.0),
    Param("sgbm_nearest_max_gap", 0.0, "Hybrid backend: where SGBM's passes disagree and none lies within this "
          "many px (at the network's input size) of the network's disparity, take the network's: SGBM can match "
          "textureless sky near in one pass. Held out it costs some precision, and the network's misses are far "
          "readings of near surfaces (README). 0: no limit.", 0.0, 1024.0),
    Param("refine", False, "Hybrid backend: refine the fused disparity with the packaged image-guided "
          "refiner (stereo_refine weights): more accurate depth held out, but it flew worse in the closed-loop "
          "benchmark, so off by default."),
)


class StereoDepthNode(DepthNodeBase):
    """Rectified pair -> disparity + depth with one stereo estimator."""

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, PARAMS, **kwargs)
        self.cameras: dict[str, PinholeCamera | None] = {s: None for s in SIDES}
        self.pairer = ExactStampPairer(PAIR_BUFFER)
        self.pub_disparity = self.create_publisher(DisparityImage, "disparity", SENSOR_QOS)
        backend, max_disp = self.param("backend"), self.param("max_disparity")
        try:
            if backend == "sgbm":
                options = {"num_disparities": max_disp} if max_disp else {}
            else:
                options = {"net_size": self.net_size(), **({"max_disparity": max_disp} if max_disp else {})}
            if backend != "network":
                options["passes"] = self.param("sgbm_passes")
            options["near_pass"] = self.param("near_pass")
            if backend == "hybrid":
                options["refine"] = self.param("refine")
                options["texture_min"] = float(self.param("sgbm_texture_min"))
                options["nearest_max_gap"] = float(self.param("sgbm_nearest_max_gap")) or float("inf")
        except ValueError as exc:
            self.fail(str(exc))
        else:
            self.start_estimator(BACKEND_MODES[backend], **options)
        # subscribed after the estimator's warm-up (see mono_depth_node)
        for side in SIDES:
            self.create_subscription(CameraInfo, f"stereo/{side}/camera_info",
                                     lambda msg, s=side: self.on_camera_info(s, msg), SENSOR_QOS)
            self.create_subscription(Image, f"stereo/{side}/image_rect",
                                     lambda msg, s=side: self.on_image(s, msg), SENSOR_QOS)

    def on_camera_info(self, side: str, msg: CameraInfo) -> None:
        topic = f"stereo/{side}/camera_info"
        self.received(topic)
        try:
            cam = camera_info_to_pinhole(msg)
            if side == "right" and not cam.baseline > 0:
                raise ValueError(f"right camera baseline must be > 0 (P[0,3] = -fx*B), got P[0,3]={cam.P[0, 3]}")
            self.cameras[side] = cam
        except ValueError as exc:
            self.reject(topic, str(exc))

    def on_image(self, side: str, msg: Image) -> None:
        topic = f"stereo/{side}/image_rect"
        self.received(topic)
        try:
            rgb = image_to_rgb(msg, self.param("max_image_side"))
        except ValueError as exc:
            self.reject(topic, str(exc))
            return
        pair = self.pairer.add(side, stamp_to_ns(msg.header.stamp), (msg.header, rgb))
        if pair is None:
            return
        _, (header, left), (_, right) = pair
        left_cam, right_cam = self.cameras["left"], self.cameras["right"]
        if left_cam is None or right_cam is None:
            self.reject(topic, "no stereo/left and stereo/right camera_info received yet")
            return
        try:
            inp = DepthInput(left, left_cam, right_rgb=right, right_camera=right_cam)
        except ValueError as exc:
            self.reject(topic, str(exc))
            return
        self.submit(output_header(header, left_cam), inp)

    def publish_outputs(self, frame: PendingFrame, out: DepthOutput) -> None:
        super().publish_outputs(frame, out)
        cam, baseline = frame.inp.camera, frame.inp.baseline
        net_size = getattr(self.estimator, "net_size", None)
        rng = disparity_range(self.estimator, cam.width, net_size[0] if net_size else None)
        disp = disparity_image(out.depth, cam.fx, baseline, rng)
        x, y, w, h = valid_window(disp, rng.min_px)
        msg = DisparityImage(header=frame.header, f=cam.fx, t=baseline, min_disparity=rng.min_px,
                             max_disparity=rng.max_px, delta_d=rng.delta_px)
        msg.image = array_to_image_msg(disp, "32FC1", header=frame.header)
        msg.valid_window = RegionOfInterest(x_offset=x, y_offset=y, width=w, height=h)
        self.pub_disparity.publish(msg)

    def diagnostics_values(self) -> dict[str, str]:
        values = super().diagnostics_values()
        values["images_unpaired"] = str(self.pairer.unpaired)
        return values


def main(args=None) -> int:
    return run_node(lambda context: StereoDepthNode(context=context), args)


if __name__ == "__main__":
    sys.exit(main())
