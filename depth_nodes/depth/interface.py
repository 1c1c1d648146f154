"""Depth-estimation interface shared by nodes, evaluation and benchmarks.

Every estimator (mono+radar network, stereo network, OpenCV SGBM) takes a
:class:`DepthInput` and returns a :class:`DepthOutput`, so callers never care
which model or runtime runs. Depth is float32 metres along the left camera's
optical z axis with NaN where there is no estimate (REP-118); radar points are
``(N, 5)`` float32 ``x, y, z, velocity, intensity`` in the LEFT camera optical
frame (z forward, x right, y down; metres, m/s, arbitrary intensity units).
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from depth_nodes.camera import PinholeCamera

#: Estimation modes understood by :func:`make_estimator`.
MODES = ("mono", "mono-radar", "stereo", "stereo-hybrid", "sgbm")
#: The modes that need a rectified stereo pair.
STEREO_MODES = ("stereo", "stereo-hybrid", "sgbm")
#: Inference runtimes understood by :func:`make_estimator` (``auto``: see :func:`resolve_runtime`).
RUNTIMES = ("auto", "torch", "onnx", "tensorrt")
DEVICES = ("cpu", "cuda")
#: Network arithmetic understood by :func:`make_estimator` (``auto``: see :func:`resolve_precision`).
PRECISIONS = ("auto", "fp32", "fp16")
#: Keyword options :func:`make_estimator` accepts per mode.
ESTIMATOR_OPTIONS = {
    "mono": {"net_size"},
    "mono-radar": {"net_size", "radar_dilate"},
    "stereo": {"net_size", "max_disparity", "near_pass"},
    "stereo-hybrid": {"net_size", "max_disparity", "near_pass", "num_disparities", "block_size", "uniqueness_ratio",
                      "passes", "agreement", "refine", "refine_weights", "texture_min", "nearest_max_gap"},
    "sgbm": {"num_disparities", "block_size", "uniqueness_ratio", "passes", "require_agreement", "near_pass"},
}
#: Whose disparity the stereo hybrid takes where SGBM's passes disagree (see
#: runtime.HybridStereoEstimator): the pass nearest the network's, the network's, the first pass's.
HYBRID_AGREEMENT = ("nearest", "all", "first")
#: Most radar points accepted in one frame (guards allocations from bad messages).
MAX_RADAR_POINTS = 100_000


def check_image(img, camera: PinholeCamera, name: str) -> np.ndarray:
    """Validate an (H, W, 3) uint8 RGB image against ``camera``; return it contiguous."""
    a = np.asarray(img)
    if a.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 RGB, got dtype {a.dtype}")
    if a.shape != (camera.height, camera.width, 3):
        raise ValueError(f"{name} shape {a.shape} does not match camera ({camera.height}, {camera.width}, 3)")
    return np.ascontiguousarray(a)


def check_radar(radar) -> np.ndarray | None:
    """Validate radar points: None/empty -> None, else finite float32 (N, 5)."""
    if radar is None:
        return None
    r = np.asarray(radar)
    if r.ndim != 2 or r.shape[1] != 5:
        raise ValueError(f"radar must have shape (N, 5) [x, y, z, velocity, intensity], got {r.shape}")
    if r.shape[0] > MAX_RADAR_POINTS:
        raise ValueError(f"radar has {r.shape[0]} points, more than the limit {MAX_RADAR_POINTS}")
    if not np.issubdtype(r.dtype, np.floating):
        raise ValueError(f"radar must be floating point, got dtype {r.dtype}")
    r = r.astype(np.float32, copy=False)
    if r.shape[0] and not np.all(np.isfinite(r[:, :3])):
        raise ValueError("radar x, y, z must be finite")
    return r


@dataclass(frozen=True)
class DepthInput:
    """One frame to estimate depth for.

    ``rgb``: (H, W, 3) uint8 left image matching ``camera``. ``radar``: (N, 5)
    float32 points in ``camera``'s optical frame or None. ``right_rgb`` and
    ``right_camera``: the rectified right image and its camera (``P[0, 3] =
    -fx * baseline``) for stereo modes. Validated on construction.
    """

    rgb: np.ndarray
    camera: PinholeCamera
    radar: np.ndarray | None = None
    right_rgb: np.ndarray | None = None
    right_camera: PinholeCamera | None = None

    def __post_init__(self):
        if not isinstance(self.camera, PinholeCamera):
            raise ValueError(f"camera must be a PinholeCamera, got {type(self.camera).__name__}")
        object.__setattr__(self, "rgb", check_image(self.rgb, self.camera, "rgb"))
        object.__setattr__(self, "radar", check_radar(self.radar))
        if (self.right_rgb is None) != (self.right_camera is None):
            raise ValueError("right_rgb and right_camera must be given together")
        if self.right_camera is not None:
            rc = self.right_camera
            if not isinstance(rc, PinholeCamera):
                raise ValueError(f"right_camera must be a PinholeCamera, got {type(rc).__name__}")
            if rc.size != self.camera.size:
                raise ValueError(f"right_camera size {rc.size} differs from left camera size {self.camera.size}")
            if not rc.baseline > 0:
                raise ValueError(f"right_camera baseline must be > 0 (P[0,3] = -fx*B), got {rc.baseline}")
            object.__setattr__(self, "right_rgb", check_image(self.right_rgb, rc, "right_rgb"))

    @property
    def baseline(self) -> float:
        """Stereo baseline in metres (0 without a right camera)."""
        return 0.0 if self.right_camera is None else self.right_camera.baseline


@dataclass
class DepthOutput:
    """Estimated depth for the left camera.

    ``depth``: float32 (H, W) metres, NaN invalid. ``confidence``: float32
    (H, W) in [0, 1] (0 where depth is NaN). ``timings``: stage name ->
    milliseconds (``total`` always present).
    """

    depth: np.ndarray
    confidence: np.ndarray
    camera: PinholeCamera
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self):
        shape = (self.camera.height, self.camera.width)
        d = np.asarray(self.depth, dtype=np.float32)
        c = np.asarray(self.confidence, dtype=np.float32)
        if d.shape != shape or c.shape != shape:
            raise ValueError(f"depth {d.shape} / confidence {c.shape} must both be {shape}")
        # in few passes over the image (this runs on every frame): NaN fails d > 0, +inf d < inf
        good = d > 0
        good &= d < np.inf
        d = np.where(good, d, np.float32(np.nan))
        c = np.clip(c, np.float32(0), np.float32(1))
        good &= c == c  # NaN confidence -> 0
        self.depth, self.confidence = d, np.where(good, c, np.float32(0))


class StageTimer:
    """Collects per-stage wall-clock milliseconds: ``with timer("net"): ...``."""

    def __init__(self):
        self.ms: dict[str, float] = {}
        self._t0 = time.perf_counter()

    @contextmanager
    def __call__(self, stage: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.ms[stage] = self.ms.get(stage, 0.0) + (time.perf_counter() - t) * 1e3

    def finish(self) -> dict[str, float]:
        self.ms["total"] = (time.perf_counter() - self._t0) * 1e3
        return self.ms


class DepthEstimator(ABC):
    """Base of every estimator. Subclasses set ``name`` and implement ``_estimate``.

    ``weights_status`` is ``"trained"``, ``"random-init"`` (benchmarks only) or
    ``"classical"`` (no weights). ``no_return_is_far``: True when a NaN pixel of this
    estimator means "nothing within range" (a measurement of free space), False when it
    means "could not tell" (a hole); planners may treat the former as free space.
    """

    name: str = "depth"
    requires_stereo: bool = False
    weights_status: str = "classical"
    no_return_is_far: bool = False

    def estimate(self, inp: DepthInput) -> DepthOutput:
        """Depth for ``inp``'s left camera (validates that stereo input is present when needed)."""
        if not isinstance(inp, DepthInput):
            raise ValueError(f"inp must be a DepthInput, got {type(inp).__name__}")
        if self.requires_stereo and inp.right_rgb is None:
            raise ValueError(f"estimator {self.name!r} needs right_rgb and right_camera")
        timer = StageTimer()
        depth, conf = self._estimate(inp, timer)
        return DepthOutput(depth, conf, inp.camera, timer.finish())

    @abstractmethod
    def _estimate(self, inp: DepthInput, timer: StageTimer) -> tuple[np.ndarray, np.ndarray]:
        """Return (depth, confidence) at the camera's resolution."""


def resolve_runtime(runtime: str, device: str) -> str:
    """``auto`` -> ``onnx`` on the CPU (onnxruntime ran the mono+radar network 1.2-1.4x faster than
    torch there and the stereo network about as fast, ``depth-nodes bench models``; the flight
    benchmark's results were measured on it) and ``torch`` on CUDA (fp16, no extra package);
    any other runtime is returned unchanged."""
    if runtime != "auto":
        return runtime
    return "torch" if device == "cuda" else "onnx"


def resolve_precision(precision: str, runtime: str, device: str) -> str:
    """``fp32`` or ``fp16`` for a network on ``runtime`` (resolved, not ``auto``) and ``device``.

    ``auto`` -> ``fp16`` on CUDA (torch halves the network, TensorRT may build fp16 kernels),
    ``fp32`` on the CPU. ``fp16`` on the CPU runs torch's half-precision CPU kernels: much
    slower than fp32 there, but the same arithmetic as the GPU path, to check its accuracy on a
    machine without one. onnxruntime runs the exported fp32 graph only (ValueError for fp16)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        return "fp16" if device == "cuda" and runtime != "onnx" else "fp32"
    if precision == "fp16" and runtime == "onnx":
        raise ValueError("precision 'fp16' needs runtime 'torch' or 'tensorrt'; onnxruntime runs the fp32 graph")
    return precision


def make_estimator(mode: str, runtime: str = "auto", device: str = "cpu", weights=None,
                   precision: str = "auto", **options) -> DepthEstimator:
    """Build an estimator.

    ``mode``: ``mono`` (mono+radar net with radar ignored), ``mono-radar``,
    ``stereo`` (network), ``stereo-hybrid`` (SGBM where it matches, the network in its
    holes) or ``sgbm`` (OpenCV, no runtime/weights).
    ``runtime``: ``torch``, ``onnx`` (onnxruntime), ``tensorrt`` or ``auto`` (:func:`resolve_runtime`).
    ``precision``: the networks' arithmetic, ``fp32``, ``fp16`` or ``auto`` (:func:`resolve_precision`).
    ``weights``: path to a ``.safetensors`` file (model card ``.json`` beside
    it), ``None`` for the packaged weights, or ``"random-init"`` for untrained
    networks (latency benchmarks only). Missing weights raise
    :class:`~depth_nodes.depth.model_io.WeightsNotFoundError` naming the file.
    ``options`` go to the estimator (e.g. ``net_size=(w, h)``, ``max_disparity``).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    unknown = set(options) - ESTIMATOR_OPTIONS[mode]
    if unknown:
        raise ValueError(f"options {sorted(unknown)} do not apply to mode {mode!r}; "
                         f"allowed: {sorted(ESTIMATOR_OPTIONS[mode])}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if mode == "sgbm":
        if precision != "auto":
            raise ValueError(f"precision {precision!r} applies to the networks, not to mode 'sgbm'")
        from depth_nodes.depth.sgbm import SgbmEstimator

        return SgbmEstimator(**options)
    from depth_nodes.depth.runtime import make_network_estimator

    runtime = resolve_runtime(runtime, device)
    return make_network_estimator(mode, runtime=runtime, device=device, weights=weights,
                                  precision=resolve_precision(precision, runtime, device), **options)
