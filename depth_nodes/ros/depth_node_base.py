"""Shared machinery of the depth nodes (mono_depth_node, stereo_depth_node).

* Builds ONE estimator from parameters (runtime, device with CPU fallback,
  weights, threads, network size) and warms it up. When that fails (e.g. the
  trained weights are missing) the node stays up, logs one error, publishes
  nothing from the network and reports ``ERROR`` with the reason in
  ``diagnostics``.
* Never queues frames: input callbacks put the newest frame into a one-slot
  mailbox and wake a processing callback (own callback group, so inputs keep
  being received while a frame is processed); a replaced frame is counted as
  dropped.
* Publishes ``depth/image`` and ``depth/confidence`` (32FC1, NaN invalid, the
  input image's header), ``depth/camera_info`` and, optionally,
  ``depth/points`` (x, y, z float32 in the camera optical frame, subsampled).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header

from depth_nodes.camera import PinholeCamera
from depth_nodes.depth.interface import (PRECISIONS, RUNTIMES, DepthEstimator, DepthInput, DepthOutput,
                                        make_estimator)
from depth_nodes.depth.stamp_match import LatestSlot
from depth_nodes.params import Param
from depth_nodes.ros.conversions import array_to_image_msg, pinhole_to_camera_info_msg, xyz_to_cloud_msg
from depth_nodes.ros.node_base import SENSOR_QOS, BaseNode

#: Value of the ``weights`` parameter selecting untrained networks (needs ``allow_random_weights``).
RANDOM_WEIGHTS = "random-init"
#: Warm-up image size (width, height) when neither the parameters nor the model card fix one.
WARMUP_SIZE = (320, 240)

#: Parameters every depth node declares.
ESTIMATOR_PARAMS: tuple[Param, ...] = (
    Param("runtime", "auto", "Inference runtime of the depth network (auto: onnx on cpu, torch on cuda).",
          choices=RUNTIMES),
    Param("device", "cpu", "Inference device; cuda falls back to cpu (one log line) when CUDA is unavailable.",
          choices=("cpu", "cuda")),
    Param("precision", "auto", "Network arithmetic (auto: fp16 on cuda with torch/tensorrt, else fp32; "
          "fp16 on cpu needs runtime torch and is slow).", choices=PRECISIONS),
    Param("weights", "", "Network weights: '' = packaged weights, else a path to a .safetensors file "
          "(model card .json beside it)."),
    Param("allow_random_weights", False, "Accept weights='random-init' (untrained network): tests and "
          "benchmarks only, the depth is meaningless."),
    Param("threads", 0, "CPU threads for torch/onnxruntime/OpenCV (0 = library default).", 0, 64),
    Param("net_width", 0, "Network input width in pixels (0 = from the model card: its size, or for a "
          "focal-normalised mono network the camera resampled to the card's focal length).", 0, 4096),
    Param("net_height", 0, "Network input height in pixels (0 = from the model card, as net_width).", 0, 4096),
    Param("publish_points", True, "Publish depth/points (x, y, z in the camera optical frame)."),
    Param("points_stride", 4, "Publish every n-th pixel (rows and columns) in depth/points.", 1, 64),
)


def resolve_weights(value: str, allow_random: bool) -> str | None:
    """The ``weights`` argument of make_estimator for a ``weights`` parameter value.

    '' -> None (packaged); ``random-init`` only with ``allow_random``; anything
    else must be an existing ``.safetensors`` file.
    """
    if value == "":
        return None
    if value == RANDOM_WEIGHTS:
        if not allow_random:
            raise ValueError(f"weights={RANDOM_WEIGHTS!r} needs allow_random_weights=true "
                             "(untrained network: tests and benchmarks only)")
        return value
    path = Path(value).expanduser()
    if path.suffix != ".safetensors":
        raise ValueError(f"weights={value!r} must be a .safetensors file")
    if not path.is_file():
        raise ValueError(f"weights file {path} does not exist")
    return str(path)


@dataclass(frozen=True)
class PendingFrame:
    """A validated input waiting for the estimator, with the header its outputs carry."""

    header: Header
    inp: DepthInput


class DepthNodeBase(BaseNode):
    """Base of the depth nodes: subclasses subscribe, validate, and call :meth:`submit`.

    ``params`` must include :data:`ESTIMATOR_PARAMS`.
    """

    def __init__(self, node_name: str, params: tuple[Param, ...], **kwargs):
        super().__init__(node_name, params, **kwargs)
        self.estimator: DepthEstimator | None = None
        self.device = self.param("device")
        self.mailbox = LatestSlot()
        self.failed_frames = 0
        self.pub_depth = self.create_publisher(Image, "depth/image", SENSOR_QOS)
        self.pub_confidence = self.create_publisher(Image, "depth/confidence", SENSOR_QOS)
        self.pub_info = self.create_publisher(CameraInfo, "depth/camera_info", SENSOR_QOS)
        self.pub_points = (self.create_publisher(PointCloud2, "depth/points", SENSOR_QOS)
                           if self.param("publish_points") else None)
        self._wake = self.create_guard_condition(self._process, MutuallyExclusiveCallbackGroup())

    # -- estimator -------------------------------------------------------------
    def net_size(self) -> tuple[int, int] | None:
        w, h = self.param("net_width"), self.param("net_height")
        if (w == 0) != (h == 0):
            raise ValueError(f"net_width and net_height must both be 0 or both > 0, got {w}x{h}")
        if w and min(w, h) < 16:
            raise ValueError(f"net_width/net_height must be >= 16, got {w}x{h}")
        return (w, h) if w else None

    def start_estimator(self, mode: str, warmup: PinholeCamera | None = None, **options) -> None:
        """Build the estimator for ``mode`` and warm it up; on failure enter the ERROR state."""
        try:
            network = mode != "sgbm"
            kwargs = {}
            if network:
                kwargs["weights"] = resolve_weights(self.param("weights"), self.param("allow_random_weights"))
                kwargs["runtime"], kwargs["device"] = self.param("runtime"), self._usable_device()
                kwargs["precision"] = self.param("precision")
            self._set_threads(self.param("threads"), network)
            est = make_estimator(mode, **kwargs, **options)
            est.estimate(self.warmup_input(est, warmup))
        except (ValueError, OSError, RuntimeError) as exc:  # WeightsNotFoundError: OSError; torch: RuntimeError
            self.fail(f"cannot start the {mode} estimator: {exc}")
            return
        self.estimator = est
        status = getattr(est, "weights_status", "classical")
        if status == RANDOM_WEIGHTS:
            self.set_status(DiagnosticStatus.WARN, f"{est.name}: UNTRAINED random-init weights (tests only)")
        else:
            self.set_status(DiagnosticStatus.OK, f"{est.name} ({status}) ready")
        self.get_logger().info(f"depth estimator {est.name} ready ({status}, device {self.device})")

    def _usable_device(self) -> str:
        if self.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                self.get_logger().warning("device=cuda requested but CUDA is unavailable: using cpu")
                self.device = "cpu"
        return self.device

    @staticmethod
    def _set_threads(threads: int, network: bool) -> None:
        if threads <= 0:
            return
        import cv2

        cv2.setNumThreads(threads)
        if network:
            import torch

            torch.set_num_threads(threads)

    def warmup_input(self, est: DepthEstimator, camera: PinholeCamera | None) -> DepthInput:
        """A black frame at ``camera`` (default: network or card size) to run once at start-up."""
        if camera is None:
            size = getattr(est, "net_size", None) or WARMUP_SIZE
            camera = PinholeCamera.from_fov(size[0], size[1], 90.0)
        black = np.zeros((camera.height, camera.width, 3), np.uint8)
        if est.requires_stereo:
            return DepthInput(black, camera, right_rgb=black, right_camera=camera.with_baseline(0.1))
        return DepthInput(black, camera)

    def fail(self, reason: str) -> None:
        """Enter the ERROR state: one error log line, reported in diagnostics, nothing published."""
        self.estimator = None
        self.get_logger().error(reason)
        self.set_status(DiagnosticStatus.ERROR, reason)

    def set_status(self, level: bytes, message: str) -> None:
        self.status_level, self.status_message = level, message

    # -- frames ------------------------------------------------------------------
    def submit(self, header: Header, inp: DepthInput) -> None:
        """Hand the newest validated frame to the processing callback (replacing an unprocessed one)."""
        if self.estimator is None:
            return
        self.mailbox.put(PendingFrame(header, inp))
        self._wake.trigger()

    def _process(self) -> None:
        frame = self.mailbox.take()
        if frame is None or self.estimator is None:
            return
        try:
            with self.stage("estimate"):
                out = self.estimator.estimate(frame.inp)
        except Exception as exc:  # noqa: BLE001 - a frame never kills the node
            self.failed_frames += 1
            self.reject("estimate", f"{type(exc).__name__}: {exc}")
            return
        with self.stage("publish"):
            self.publish_outputs(frame, out)

    def publish_outputs(self, frame: PendingFrame, out: DepthOutput) -> None:
        """Publish depth, confidence, camera info and points; subclasses add their own outputs."""
        h = frame.header
        # the info first: consumers keep the newest info and reject a depth image before one
        self.pub_info.publish(pinhole_to_camera_info_msg(out.camera, header=h))
        self.pub_depth.publish(array_to_image_msg(out.depth, "32FC1", header=h))
        # confidence and points are only serialised for someone listening (rclpy serialises
        # every publish, and this is on the camera-to-trajectory path)
        if self.pub_confidence.get_subscription_count() > 0:
            self.pub_confidence.publish(array_to_image_msg(out.confidence, "32FC1", header=h))
        if self.pub_points is not None and self.pub_points.get_subscription_count() > 0:
            s = self.param("points_stride")
            pts = out.camera.unproject(out.depth, keep_invalid=True)[::s, ::s].reshape(-1, 3)
            pts = pts[np.isfinite(pts[:, 2])]
            self.pub_points.publish(xyz_to_cloud_msg(pts, header=h))

    def diagnostics_values(self) -> dict[str, str]:
        values = super().diagnostics_values()
        values["frames_processed"] = str(self.mailbox.taken - self.failed_frames)
        values["frames_dropped"] = str(self.mailbox.dropped)
        values["frames_failed"] = str(self.failed_frames)
        values["estimator"] = self.estimator.name if self.estimator is not None else "none"
        values["weights_status"] = getattr(self.estimator, "weights_status", "none")
        values["device"] = self.device
        return values


def output_header(msg_header: Header, camera: PinholeCamera) -> Header:
    """The input image's header; an empty frame id becomes the camera's optical frame."""
    return Header(stamp=msg_header.stamp, frame_id=msg_header.frame_id or camera.frame_id)
