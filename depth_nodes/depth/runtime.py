"""Inference runtimes (torch, onnxruntime, TensorRT) and the network estimators.

A *backend* runs one network on float32 NCHW numpy arrays and returns float32
numpy arrays, whatever the runtime; the estimators do the pre/post-processing
(resizing, radar encoding, disparity -> depth) once, in numpy, so every
runtime sees identical inputs.

* ``torch``: channels_last on both devices; float32 on the CPU, float16 on CUDA. On the
  CPU the network runs as a frozen TorchScript graph, traced once per input shape
  (:class:`TorchBackend`).
* ``onnx``: the network is exported (static shapes, opset 17) to ONNX in
  memory and run by onnxruntime (CUDA provider when ``device="cuda"``).
* ``tensorrt``: the same ONNX graph built into a TensorRT engine (FP16 when
  the GPU supports it); needs the ``tensorrt`` package and CUDA.
"""
from __future__ import annotations

import copy
import ctypes
import io
import logging
import os
import platform
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from depth_nodes.camera import PinholeCamera
from depth_nodes.depth.disparity import disparity_to_depth
from depth_nodes.depth.interface import HYBRID_AGREEMENT, DepthEstimator, DepthInput, StageTimer, resolve_precision
from depth_nodes.depth.model_io import (ARCH_FOR_MODEL, MODEL_FOR_MODE, build_model, card_config, default_weights,
                                        fold_batchnorm, load_weights)
from depth_nodes.depth.radar_encoding import encode_radar
from depth_nodes.depth.refine_net import source_channels
from depth_nodes.depth.sgbm import (DEFAULT_PASSES, NEAR_MARGIN_PX, NEAR_RANGE_FRACTION, SgbmEstimator,
                                     disparity_confidence, fuse_passes, horizontal_texture)

log = logging.getLogger(__name__)


ONNX_OPSET = 17
#: Input/output tensor names of each architecture (ONNX graph names too).
IO_NAMES = {"MonoRadarNet": (["image", "radar"], ["depth", "confidence"]),
            "StereoNet": (["left", "right"], ["disparity", "confidence"]),
            "DisparityRefiner": (["left", "right", "disparity", "source"], ["disparity"])}


class RuntimeUnavailableError(ValueError):
    """The requested runtime/device cannot run on this machine."""


def export_onnx(model: nn.Module, inputs: list[np.ndarray], path=None) -> bytes:
    """Export ``model`` (eval mode, static input shapes) to ONNX; write to ``path`` if given."""
    in_names, out_names = IO_NAMES[type(model).__name__]
    buf = io.BytesIO()
    model = model.eval()
    args = tuple(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)) for x in inputs)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(model, args, buf, input_names=in_names, output_names=out_names,
                          opset_version=ONNX_OPSET, do_constant_folding=True, dynamo=False)
    data = buf.getvalue()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(data)
    return data


#: Environment variable that, set to 0, leaves the C library's memory settings alone.
RETAIN_MEMORY_ENV = "DEPTH_NODES_RETAIN_FREED_MEMORY"
#: mallopt parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_memory_retained: bool | None = None


def retain_freed_memory() -> bool:
    """Make glibc keep the memory this process frees for its next allocations (once per process).

    By default glibc gives every block of 128 KiB or more back to the kernel when it is freed,
    and the next such block is mapped afresh: one page fault per 4 KiB page touched. A torch
    forward pass on the CPU allocates and frees each feature map, so the same buffers were
    mapped again on every frame, thousands of page faults per pass (``*_page_faults`` in
    ``depth-nodes bench models``). Raising the mmap and trim thresholds (``mallopt``) serves
    them from the process's heap instead. onnxruntime keeps its own arena and does not need it.

    The price: the process keeps its peak heap (what the networks needed at once, tens of MB)
    instead of shrinking after a large free. Nothing is done off glibc (macOS, musl) or with
    ``DEPTH_NODES_RETAIN_FREED_MEMORY=0`` (compare the benchmark with and without it).
    Returns whether the setting is in force."""
    global _memory_retained
    if _memory_retained is None:
        _memory_retained = False
        if os.environ.get(RETAIN_MEMORY_ENV, "1") != "0" and platform.system() == "Linux" \
                and platform.libc_ver()[0] == "glibc":
            try:
                libc = ctypes.CDLL("libc.so.6")
                # glibc may refuse an mmap threshold above its heap size limit: then 32 MiB
                _memory_retained = bool(libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30)
                                        or libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)) \
                    and bool(libc.mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1))
            except (OSError, AttributeError) as exc:
                log.debug("mallopt unavailable: %s", exc)
        log.debug("freed memory retained by the process: %s", _memory_retained)
    return _memory_retained


def memory_retained() -> bool:
    """Whether :func:`retain_freed_memory` has put its setting in force in this process."""
    return bool(_memory_retained)


#: Set to 0 to run the torch runtime's networks eagerly on the CPU instead of as frozen graphs.
FREEZE_ENV = "DEPTH_NODES_TORCH_FREEZE"
#: Frozen graphs a :class:`TorchBackend` keeps (one per input shape; the oldest is dropped).
MAX_FROZEN_SHAPES = 8


class TorchBackend:
    """Runs a torch module channels_last, in float16 with ``half`` (default: on CUDA only; on the
    CPU, torch's slow half-precision kernels check the GPU path's numerics where there is no GPU).
    On the CPU the process keeps the memory it frees (:func:`retain_freed_memory`), and float32
    inputs are passed in NCHW: the networks first normalise and concatenate them, several times
    faster in NCHW than channels last (where each pixel's few channels are strided), and their
    first convolution then converts its input once (its weights are channels last).

    ``freeze`` (default: on the CPU, unless ``DEPTH_NODES_TORCH_FREEZE=0``): the module is
    traced on the first call with each input shape and frozen (``torch.jit.trace`` then
    ``torch.jit.freeze``, under a second), and that graph runs the later calls with this shape:
    the same operators on the same weights, without Python between them, and with what depends
    only on the weights (reshaped kernels, normalisation constants) computed once. On this
    project's 2-core CPU it ran the networks 7-20 % faster with identical outputs (smaller
    inputs gain more). A trace depends on the module's configuration at the time (the stereo
    network's search range): build a new backend after changing it. Where tracing fails (a
    torch without TorchScript) the backend logs a warning and runs the module eagerly.
    CUDA runs eagerly."""

    def __init__(self, model: nn.Module, device: str = "cpu", freeze: bool | None = None, half: bool | None = None):
        if device == "cuda" and not torch.cuda.is_available():
            raise RuntimeUnavailableError("device='cuda' requested but torch.cuda.is_available() is False")
        self.device = torch.device(device)
        self.half = device == "cuda" if half is None else bool(half)
        if device == "cpu":
            retain_freed_memory()
        if freeze is None:
            freeze = device == "cpu" and os.environ.get(FREEZE_ENV, "1") != "0"
        self.freeze = bool(freeze)
        self._frozen: dict[tuple, object] = {}  # input shapes -> frozen graph
        model = model.eval().to(self.device)
        if self.half:
            model = model.half()
        # channels_last on the CPU too: oneDNN then runs every convolution, where the default
        # layout sends small feature maps (batch 1, under 20480 values) to a slow im2col path
        self.model = model.to(memory_format=torch.channels_last)

    def __call__(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        module = self._module_for(inputs)
        with torch.inference_mode():
            outs = module(*self._tensors(inputs))
            return [o.float().contiguous().cpu().numpy() for o in outs]

    def _tensors(self, inputs: list[np.ndarray]) -> list[torch.Tensor]:
        xs = [torch.from_numpy(x).to(self.device) for x in inputs]
        if self.half:  # float32 inputs stay NCHW (see the class docstring)
            xs = [x.half().contiguous(memory_format=torch.channels_last) for x in xs]
        return xs

    def _module_for(self, inputs: list[np.ndarray]):
        """What runs inputs of these shapes: their frozen graph, traced now if new, or the module."""
        if not self.freeze:
            return self.model
        key = tuple(x.shape for x in inputs)
        graph = self._frozen.get(key)
        if graph is None:
            graph = self._trace(inputs)
            if graph is None:
                return self.model
            if len(self._frozen) >= MAX_FROZEN_SHAPES:
                self._frozen.pop(next(iter(self._frozen)))
            self._frozen[key] = graph
        return graph

    def _trace(self, inputs: list[np.ndarray]):
        """The frozen graph of ``self.model`` for inputs shaped like ``inputs``; None (and eager
        from now on) where tracing fails."""
        try:
            # its warnings (TorchScript's deprecation, shapes taken as constants) are expected
            # for a trace made for one input shape
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                xs = tuple(self._tensors(inputs))
                return torch.jit.freeze(torch.jit.trace(self.model, xs, check_trace=False))
        except Exception as exc:  # noqa: BLE001 - any failure leaves the eager module, which works
            log.warning("torch runtime: could not trace %s (%s: %s); running it eagerly",
                        type(self.model).__name__, type(exc).__name__, exc)
            self.freeze = False
            return None


def onnx_providers(device: str) -> list[str]:
    """onnxruntime execution providers for ``device``; RuntimeUnavailableError if CUDA is missing."""
    import onnxruntime as ort

    if device != "cuda":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise RuntimeUnavailableError("device='cuda' with runtime='onnx' needs onnxruntime's "
                                      "CUDAExecutionProvider, which this installation lacks")
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


class OnnxBackend:
    """Runs an ONNX graph with onnxruntime (threads follow torch.get_num_threads()).

    Its threads sleep between runs instead of spinning: a spinning pool takes the cores from
    whatever runs next, another session included (the stereo network's near pass at half size
    took 33-42 ms after the full-size session instead of 13 ms, and that one 68-84 ms instead of
    42-49 ms), or another node of the graph."""

    def __init__(self, onnx_model: bytes, device: str = "cpu"):
        import onnxruntime as ort

        providers = onnx_providers(device)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(onnx_model, sess_options=opts, providers=providers)
        self.input_names = [i.name for i in self.session.get_inputs()]

    def __call__(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return self.session.run(None, dict(zip(self.input_names, inputs)))


def import_tensorrt():
    """The ``tensorrt`` module, or RuntimeUnavailableError saying why it cannot be used."""
    try:
        import tensorrt
    except ImportError as exc:
        raise RuntimeUnavailableError(
            "runtime='tensorrt' needs the `tensorrt` Python package (JetPack / pip tensorrt), "
            "which is not importable here; use runtime='onnx' or 'torch'") from exc
    if not torch.cuda.is_available():
        raise RuntimeUnavailableError("runtime='tensorrt' needs CUDA, but torch.cuda.is_available() is False")
    return tensorrt


def tensorrt_network_flags(trt) -> int:
    """``create_network`` flags for an ONNX graph: explicit batch, which TensorRT 8 needs for ONNX
    (JetPack 5 and 6.0) and TensorRT 10 always uses (there the flag is deprecated and ignored)."""
    major = int(str(getattr(trt, "__version__", "10")).split(".")[0])
    flag = getattr(getattr(trt, "NetworkDefinitionCreationFlag", None), "EXPLICIT_BATCH", None)
    return 0 if major >= 10 or flag is None else 1 << int(flag)


class TensorRTBackend:
    """Builds a TensorRT engine from ONNX and runs it on CUDA tensors; ``fp16`` lets TensorRT
    choose half-precision kernels (the graph's inputs and outputs stay float32)."""

    def __init__(self, onnx_model: bytes, fp16: bool = True):
        trt = import_tensorrt()
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        network = builder.create_network(tensorrt_network_flags(trt))
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(onnx_model):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeUnavailableError(f"TensorRT could not parse the ONNX graph: {errors}")
        config = builder.create_builder_config()
        if fp16:
            if not getattr(builder, "platform_has_fast_fp16", True):
                log.warning("TensorRT: this GPU has no fast fp16; building with fp16 allowed anyway")
            config.set_flag(trt.BuilderFlag.FP16)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise RuntimeUnavailableError("TensorRT engine build failed (see TensorRT log)")
        self.engine = trt.Runtime(logger).deserialize_cuda_engine(serialized)
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = [self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names]
        self.inputs = [n for n, i in zip(names, is_input) if i]
        self.outputs = {n: torch.empty(tuple(self.engine.get_tensor_shape(n)), dtype=torch.float32, device="cuda")
                        for n, i in zip(names, is_input) if not i}
        self.stream = torch.cuda.Stream()

    def __call__(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        # the copies go on the engine's stream: a stream made by torch does not wait for the
        # default stream, so copies queued there could still be running when the engine reads
        with torch.cuda.stream(self.stream):
            xs = [torch.from_numpy(np.ascontiguousarray(x)).to("cuda") for x in inputs]
        for name, x in zip(self.inputs, xs):
            self.context.set_tensor_address(name, x.data_ptr())
        for name, out in self.outputs.items():
            self.context.set_tensor_address(name, out.data_ptr())
        self.context.execute_async_v3(self.stream.cuda_stream)
        self.stream.synchronize()
        return [o.cpu().numpy() for o in self.outputs.values()]


class ModelRunner:
    """One network on one runtime: ``model`` as trained, ``inference_model`` its BatchNorm-folded
    copy that the runtime executes. ONNX/TensorRT graphs are built on the first call with each
    input shape (expect that call to take about a second)."""

    def __init__(self, model: nn.Module, runtime: str, device: str, precision: str = "auto"):
        self.model = model.eval()
        # Inference copy with BatchNorm folded into the convolutions (same outputs, fewer ops).
        self.inference_model = fold_batchnorm(copy.deepcopy(self.model))
        self.runtime, self.device = runtime, device
        self.precision = resolve_precision(precision, runtime, device)
        self._backends: dict[tuple, object] = {}
        if runtime == "torch":
            self._torch = TorchBackend(self.inference_model, device, half=self.precision == "fp16")
        elif runtime == "onnx":  # fail early and clearly
            onnx_providers(device)
        else:
            import_tensorrt()

    @property
    def frozen(self) -> bool:
        """Whether the torch runtime runs this network as frozen graphs (:class:`TorchBackend`)."""
        return self.runtime == "torch" and self._torch.freeze

    def __call__(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Run the network on float32 NCHW arrays."""
        if self.runtime == "torch":
            return self._torch(inputs)
        key = tuple(x.shape for x in inputs)
        if key not in self._backends:
            onnx_bytes = export_onnx(self.inference_model, inputs)
            self._backends[key] = (OnnxBackend(onnx_bytes, self.device) if self.runtime == "onnx"
                                   else TensorRTBackend(onnx_bytes, fp16=self.precision == "fp16"))
        return self._backends[key](inputs)


class NetworkEstimator(DepthEstimator):
    """Common machinery: resizing to the network size and running it (:class:`ModelRunner`)."""

    def __init__(self, model: nn.Module, runtime: str, device: str, weights_status: str,
                 net_size: tuple[int, int] | None, card: dict | None, precision: str = "auto"):
        self.runner = ModelRunner(model, runtime, device, precision)
        self.model, self.runtime, self.device = self.runner.model, runtime, device
        self.precision = self.runner.precision
        self.weights_status, self.card = weights_status, card or {}
        if net_size is None and self.card.get("input_size"):
            net_size = tuple(self.card["input_size"])
        if net_size is not None and (len(net_size) != 2 or min(net_size) < 16):
            raise ValueError(f"net_size must be (width, height) with both >= 16, got {net_size}")
        self.net_size = None if net_size is None else (int(net_size[0]), int(net_size[1]))

    def net_camera(self, camera: PinholeCamera) -> PinholeCamera:
        """The camera model at network resolution."""
        if self.net_size is None or self.net_size == camera.size:
            return camera
        return camera.scaled(*self.net_size)

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Run the network on float32 NCHW arrays with the chosen runtime."""
        return self.runner(inputs)


def to_nchw(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 -> (1, 3, h, w) float32 0..255 at ``size`` = (w, h)."""
    if (img.shape[1], img.shape[0]) != size:
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img.transpose(2, 0, 1)[None], dtype=np.float32)


def to_camera(x: np.ndarray, camera: PinholeCamera) -> np.ndarray:
    """(1, 1, h, w) network output -> (H, W) float32 at the camera resolution."""
    img = np.asarray(x, dtype=np.float32)[0, 0]
    if img.shape != (camera.height, camera.width):
        img = cv2.resize(img, camera.size, interpolation=cv2.INTER_LINEAR)
    return img


class MonoRadarEstimator(NetworkEstimator):
    """Mono+radar network. ``use_radar=False`` feeds empty radar (``mono`` mode).
    ``radar_dilate``: radius (px at network resolution) of each radar point."""

    #: Field-of-view mismatch (relative, horizontal) above which a network that is not
    #: focal-normalised warns: the packaged one lost 0.02 abs_rel at 81 deg instead of 90.
    FOV_WARN_FRACTION = 0.05
    #: A focal-normalised input larger than this many times the card's input area is shrunk to it.
    MAX_AREA_FACTOR = 4.0

    def __init__(self, model, runtime="torch", device="cpu", weights_status="trained", net_size=None,
                 card=None, use_radar: bool = True, radar_dilate: int = 1, precision: str = "auto"):
        super().__init__(model, runtime, device, weights_status, net_size, card, precision)
        self.use_radar, self.radar_dilate = use_radar, int(radar_dilate)
        self.name = "mono-radar" if use_radar else "mono"
        focal = self.card.get("input_focal_px")
        self.input_focal_px = None if focal is None else (float(focal[0]), float(focal[1]))
        # an explicit net_size wins; otherwise a focal-normalised card sets the size per camera
        self.focal_normalized = bool(net_size is None and self.card.get("focal_normalized") and self.input_focal_px)
        self._net_cameras: dict[tuple, PinholeCamera] = {}

    def net_camera(self, camera: PinholeCamera) -> PinholeCamera:
        """The camera at network resolution, decided once per camera model.

        A focal-normalised network (trained on same-focal crops, card ``focal_normalized``) gets
        the image resampled to the focal length it was trained at, whatever the field of view and
        aspect; the input size then follows the camera. Otherwise the image is resized to the
        card's input size, and a field of view unlike the training camera's is logged once."""
        key = (camera.width, camera.height, camera.fx, camera.fy)
        net = self._net_cameras.get(key)
        if net is None:
            net = self._decide_net_camera(camera)
            self._net_cameras[key] = net
        return net

    def _decide_net_camera(self, camera: PinholeCamera) -> PinholeCamera:
        if not self.focal_normalized:
            net = super().net_camera(camera)
            trained_size = self.card.get("input_size")
            if self.input_focal_px and trained_size:
                trained = float(np.degrees(2 * np.arctan2(trained_size[0] / 2.0, self.input_focal_px[0])))
                if abs(camera.hfov_deg - trained) > self.FOV_WARN_FRACTION * trained:
                    log.warning("%s: camera field of view %.0f deg, the network was trained at %.0f deg and is "
                                "not focal-normalised: expect larger depth errors", self.name, camera.hfov_deg,
                                trained)
            return net
        fx, fy = self.input_focal_px
        w, h = camera.width * fx / camera.fx, camera.height * fy / camera.fy
        if self.net_size:
            limit = self.MAX_AREA_FACTOR * self.net_size[0] * self.net_size[1]
            if w * h > limit:
                shrink = float(np.sqrt(limit / (w * h)))
                log.warning("%s: a %.0f deg camera at the trained focal length needs a %dx%d input; shrunk to "
                            "%dx%d (a shorter focal than trained: expect larger errors)", self.name,
                            camera.hfov_deg, round(w), round(h), round(w * shrink), round(h * shrink))
                w, h = w * shrink, h * shrink
        size = (max(16, int(round(w))), max(16, int(round(h))))
        log.info("%s: camera %dx%d (%.0f deg) -> network input %dx%d at %.0f px focal", self.name,
                 camera.width, camera.height, camera.hfov_deg, size[0], size[1], fx)
        return camera if size == camera.size else camera.scaled(*size)

    def _estimate(self, inp: DepthInput, timer: StageTimer):
        with timer("preprocess"):
            cam = self.net_camera(inp.camera)
            image = to_nchw(inp.rgb, cam.size)
            radar = encode_radar(inp.radar if self.use_radar else None, cam, self.radar_dilate)[None]
        with timer("network"):
            depth, conf = self.run([image, radar])
        with timer("postprocess"):
            return to_camera(depth, inp.camera), to_camera(conf, inp.camera)


class StereoEstimator(NetworkEstimator):
    """Stereo network; depth = fx * baseline / disparity (NaN below disparity.MIN_DISPARITY_PX).

    The network is dense: its only NaN pixels are disparities below that minimum, i.e. farther
    than fx * baseline / MIN_DISPARITY_PX (64 m for the default rig), so ``no_return_is_far``.

    Near pass (``near_pass``, default on): the network runs a second time on the pair at half
    its input resolution, where the same search range reaches twice the disparity. A surface
    nearer than the full-resolution range covers (a tree trunk a hand's width from the camera),
    or in its last quarter, is one the full-resolution pass cannot match: its cost volume ends
    before the true match, and it reads such a surface as far (held out in simulation, trunks
    at 0.23 m came out 3-4 times too far). Where the half-resolution disparity exceeds
    ``sgbm.NEAR_RANGE_FRACTION`` of the full-resolution range and the full-resolution one by
    more than ``sgbm.NEAR_MARGIN_PX``, the pixel takes the half-resolution disparity and
    confidence. It costs a quarter of the network's time, and is skipped where half the input
    width is not wider than the search range."""

    name = "stereo"
    requires_stereo = True
    no_return_is_far = True

    def __init__(self, model, runtime="torch", device="cpu", weights_status="trained", net_size=None,
                 card=None, near_pass: bool = True, precision: str = "auto"):
        super().__init__(model, runtime, device, weights_status, net_size, card, precision)
        self.near_pass = bool(near_pass)

    def _estimate(self, inp: DepthInput, timer: StageTimer):
        disp, conf = self.disparity(inp, timer)
        with timer("postprocess"):
            return disparity_to_depth(disp, inp.camera.fx, inp.baseline), conf

    def disparity(self, inp: DepthInput, timer: StageTimer | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(disparity px at camera resolution, confidence) for a stereo input."""
        disp, conf, _ = self.network_disparity(inp, timer)
        return disp, conf

    def network_disparity(self, inp: DepthInput, timer: StageTimer | None = None):
        """(disparity px at camera resolution, confidence, near mask): the near mask marks the
        pixels whose disparity comes from the near pass (all False without it)."""
        timer = timer or StageTimer()
        if inp.right_rgb is None:
            raise ValueError("stereo disparity needs right_rgb and right_camera")
        cam = self.net_camera(inp.camera)
        disp, conf = self._pass(inp, cam.size, timer, "network")
        near = np.zeros(disp.shape, bool)
        half = self.near_pass_size(inp.camera)
        if half is not None:
            near_disp, near_conf = self._pass(inp, half, timer, "near_pass")
            with timer("near_pass"):
                full_range = self.model.max_disparity * inp.camera.width / cam.width
                near = (near_disp > NEAR_RANGE_FRACTION * full_range) & (near_disp - disp > NEAR_MARGIN_PX)
                disp, conf = np.where(near, near_disp, disp), np.where(near, near_conf, conf)
        return disp, conf, near

    def near_pass_size(self, camera: PinholeCamera) -> tuple[int, int] | None:
        """The near pass's input size for ``camera`` (half the network's), or None where it does
        not run: switched off, or half the width not wider than the search range."""
        cam = self.net_camera(camera)
        half = (cam.width // 2, max(16, cam.height // 2))
        return half if self.near_pass and half[0] > self.model.max_disparity else None

    def _pass(self, inp: DepthInput, size: tuple[int, int], timer: StageTimer, stage: str):
        """The network's (disparity px at camera resolution, confidence) with its input at ``size``."""
        with timer(stage):
            left, right = to_nchw(inp.rgb, size), to_nchw(inp.right_rgb, size)
            disp, conf = self.run([left, right])
            return to_camera(disp, inp.camera) * (inp.camera.width / size[0]), to_camera(conf, inp.camera)


class HybridStereoEstimator(StereoEstimator):
    """SGBM's disparity wherever it finds a match, the stereo network's in SGBM's holes.

    Dense like the network, with the classical matcher's sub-pixel precision on the pixels it
    trusts (it passed SGBM's uniqueness, left-right and speckle checks). With the network on a
    GPU, SGBM runs on a worker thread meanwhile (OpenCV releases the GIL); on the CPU the two run
    one after the other, each with all the threads (sharing the cores makes both slower). Its
    search range defaults to the network's at the camera's resolution.

    ``agreement`` says whose disparity a pixel gets where SGBM's passes disagree (by
    ``PASS_AGREEMENT_PX`` or more, or only some matched): ``nearest`` (default) the matched pass
    nearest the network's disparity, ``all`` the network's, ``first`` the first pass's (the
    network's where that failed). Where all passes agree it is their mean, where none matched the
    network's. The network arbitrates between SGBM's hypotheses without replacing SGBM's
    precision: held out in simulation the network is right more often than the first pass where
    they conflict, on Middlebury motorcycle the reverse, and ``nearest`` keeps most of both.
    Where the network's near pass found a surface SGBM may not reach, SGBM gives way to it as
    :func:`fuse_hybrid` says.

    ``texture_min``: where the left image's horizontal texture (:func:`sgbm.horizontal_texture`
    over a window twice SGBM's block) is below this, SGBM's match is dropped and the network's
    disparity taken. SGBM's smoothness term carries disparities into textureless regions from
    their edges: held out in simulation the hybrid put 59 % of the sky within 20 m, 34 % with
    ``texture_min`` 4, at the same abs_rel; but it flew no better and lost precision on
    Middlebury (README), so 0 (default) keeps every match.

    ``nearest_max_gap`` (px at the network's input resolution; default no limit): with
    ``agreement`` ``nearest``, where no matched pass lies within this of the network's
    disparity, the network's is taken. Held out in simulation, where the passes disagree, the
    lone matched pass was farther from the truth than the network in 70-80 % of the pixels
    whose pass lay 4-32 px from the network's, and SGBM's first pass read textureless sky as
    near (48-56 px, 0.3 m on the default rig) where the second did not match: phantom walls
    beside the goal of a flight that timed out. But abs_rel within 20 m rises (0.0591 -> 0.0605
    at 4 px), since the network's misses there are the costlier kind (far for near), and the
    refined hybrid with 16 px traded its flight timeouts for one collision more (README); so
    no limit by default.

    ``refine`` (or ``refine_weights``, a .safetensors path; default the packaged
    ``stereo_refine``): pass the fused disparity through :class:`refine_net.DisparityRefiner`.
    Held out in simulation it cuts abs_rel within 20 m by a fifth, but the hybrid flew worse
    with it in the closed-loop benchmark (README), so it is off by default."""

    name = "stereo-hybrid"

    def __init__(self, model, runtime="torch", device="cpu", weights_status="trained", net_size=None,
                 card=None, num_disparities: int | None = None, block_size: int | None = None,
                 uniqueness_ratio: int = 10, passes: int | None = None, agreement: str = "nearest",
                 near_pass: bool = True, refine: bool = False, refine_weights=None, texture_min: float = 0.0,
                 nearest_max_gap: float = np.inf, precision: str = "auto"):
        super().__init__(model, runtime, device, weights_status, net_size, card, near_pass, precision)
        if not texture_min >= 0:
            raise ValueError(f"texture_min must be >= 0, got {texture_min}")
        if not nearest_max_gap > 0:
            raise ValueError(f"nearest_max_gap must be > 0 (inf: no limit), got {nearest_max_gap}")
        self.texture_min = float(texture_min)
        self.nearest_max_gap = float(nearest_max_gap)
        self.refiner = None
        if refine or refine_weights is not None:  # refiner weights alone ask for the refinement
            path = default_weights("stereo_refine") if refine_weights is None else Path(refine_weights)
            refiner, self.refine_card = load_weights(path)
            self.refiner = ModelRunner(refiner, runtime, device, self.precision)
        if agreement not in HYBRID_AGREEMENT:
            raise ValueError(f"agreement must be one of {HYBRID_AGREEMENT}, got {agreement!r}")
        self.agreement = agreement
        passes = DEFAULT_PASSES if passes is None else passes
        sgbm_options = (block_size, uniqueness_ratio, passes)
        SgbmEstimator(num_disparities, *sgbm_options)  # reject bad options now
        self.num_disparities, self._sgbm_options = num_disparities, sgbm_options
        self._sgbm: dict[int, SgbmEstimator] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sgbm") if device == "cuda" else None

    def sgbm_for(self, width: int):
        """The SGBM matcher for images ``width`` px wide; by default it searches the network's
        range at that width, rounded up to a multiple of 16 and kept below the width (no match
        lies further away than the image is wide)."""
        nd = self.num_disparities
        if not nd:
            scale = width / float(self.net_size[0] if self.net_size else width)
            nd = int(16 * np.ceil(self.model.max_disparity * scale / 16.0))
            nd = max(16, min(nd, 16 * ((width - 1) // 16)))
        if nd not in self._sgbm:
            self._sgbm[nd] = SgbmEstimator(nd, *self._sgbm_options)
        return self._sgbm[nd]

    def _run_sgbm(self, inp: DepthInput) -> tuple[list, list, float]:
        t = time.perf_counter()
        disps, valids = self.sgbm_for(inp.camera.width).pass_disparities(inp.rgb, inp.right_rgb)
        return disps, valids, (time.perf_counter() - t) * 1e3

    def disparity(self, inp: DepthInput, timer: StageTimer | None = None) -> tuple[np.ndarray, np.ndarray]:
        timer = timer or StageTimer()
        disp, conf, source = self.fused_disparity(inp, timer)
        if self.refiner is None:
            return disp, conf
        with timer("refine"):
            inputs = [to_nchw(inp.rgb, inp.camera.size), to_nchw(inp.right_rgb, inp.camera.size),
                      np.ascontiguousarray(disp[None, None], dtype=np.float32), source]
            return self.refiner(inputs)[0][0, 0], conf

    def fused_disparity(self, inp: DepthInput, timer: StageTimer | None = None):
        """(disparity, confidence, source) before the refinement: source is the refiner's
        (1, 2, H, W) float32 input (:func:`refine_net.source_channels`)."""
        timer = timer or StageTimer()
        if inp.right_rgb is None:
            raise ValueError("stereo disparity needs right_rgb and right_camera")
        job = self._pool.submit(self._run_sgbm, inp) if self._pool else None
        net_disp, net_conf, near = self.network_disparity(inp, timer)
        disps, valids, sgbm_ms = job.result() if job else self._run_sgbm(inp)
        timer.ms["sgbm"] = sgbm_ms  # on a GPU concurrent with the network
        with timer("fuse"):
            sgbm = self.sgbm_for(inp.camera.width)
            gap = self.nearest_max_gap * inp.camera.width / self.net_camera(inp.camera).width
            disp, agree = fuse_hybrid(disps, valids, net_disp, self.agreement, near, sgbm.num_disparities, gap)
            if self.texture_min > 0:
                window = 2 * sgbm.block_for(inp.camera.width) - 1  # pixels whose blocks overlap the pixel's
                disp[horizontal_texture(inp.rgb, window) < self.texture_min] = np.nan
            matched = np.isfinite(disp)
            source = source_channels(agree & matched, matched).numpy()
            return (np.where(matched, disp, net_disp), np.where(matched, disparity_confidence(disp), net_conf),
                    source)


def fuse_hybrid(disps: list, valids: list, net_disp: np.ndarray, agreement: str = "nearest",
                near: np.ndarray | None = None, search_range: float = np.inf,
                nearest_max_gap: float = np.inf) -> tuple[np.ndarray, np.ndarray]:
    """(disparity, agreement): SGBM's disparity where the hybrid takes it (NaN where it takes
    the network's): the mean of the passes where they all agree, elsewhere as ``agreement``
    says (see :class:`HybridStereoEstimator`); agreement marks where all passes agree.
    ``nearest_max_gap`` (px, ``nearest`` only): where the pass nearest the network's is farther
    than this from it, NaN (the network's).

    ``near`` marks the pixels where the network's disparity comes from its near pass (a surface
    in or beyond the last quarter of the range). There SGBM's value, if more than
    ``sgbm.NEAR_MARGIN_PX`` from the network's, gives way to it where the passes do not
    all agree, and also where they agree but the network's disparity is at or beyond SGBM's
    ``search_range``: SGBM cannot have found a match it does not search."""
    mean, agree = fuse_passes(disps, valids)
    if agreement == "first":
        out = np.where(valids[0], mean, np.nan).astype(np.float32)
    else:
        out = np.where(agree, mean, np.nan).astype(np.float32)
    if agreement == "nearest":
        best_gap = np.full(out.shape, np.inf, np.float32)
        for d_k, valid_k in zip(disps, valids):
            gap = np.where(valid_k & ~agree, np.abs(d_k - net_disp), np.inf)
            take = gap < best_gap
            out[take], best_gap[take] = d_k[take], gap[take]
        out[np.isfinite(best_gap) & (best_gap > nearest_max_gap)] = np.nan  # no pass near the network's
    if near is not None:
        doubt = near & (~agree | (net_disp >= search_range))
        with np.errstate(invalid="ignore"):
            out[doubt & ~(np.abs(out - net_disp) <= NEAR_MARGIN_PX)] = np.nan
    return out, agree


def load_network(model_name: str, weights=None, **config_overrides) -> tuple[nn.Module, dict | None, str]:
    """(model, card, weights_status) for ``mono_radar``/``stereo``.

    ``weights``: a .safetensors path, None (packaged) or ``"random-init"`` (the packaged
    weights' architecture, as their card configures it, with random weights: what benchmarks time).
    """
    if weights == "random-init":
        torch.manual_seed(0)
        config = {**card_config(default_weights(model_name)), **config_overrides}
        return build_model(ARCH_FOR_MODEL[model_name], config).eval(), None, "random-init"
    path = default_weights(model_name) if weights is None else Path(weights)
    model, card = load_weights(path, **config_overrides)
    return model, card, "trained"


def make_network_estimator(mode: str, runtime: str = "torch", device: str = "cpu", weights=None,
                           net_size=None, max_disparity: int | None = None, **options) -> NetworkEstimator:
    """Network estimator for ``mono``, ``mono-radar``, ``stereo`` or ``stereo-hybrid`` (see
    interface.make_estimator)."""
    if mode not in MODEL_FOR_MODE:
        raise ValueError(f"network mode must be one of {sorted(MODEL_FOR_MODE)}, got {mode!r}")
    model_name = MODEL_FOR_MODE[mode]
    overrides = {}
    if max_disparity is not None:
        if MODEL_FOR_MODE[mode] != "stereo":
            raise ValueError(f"max_disparity only applies to the stereo network's modes, not {mode!r}")
        overrides["max_disparity"] = int(max_disparity)
    model, card, status = load_network(model_name, weights, **overrides)
    if mode == "stereo":
        return StereoEstimator(model, runtime, device, status, net_size, card, **options)
    if mode == "stereo-hybrid":
        return HybridStereoEstimator(model, runtime, device, status, net_size, card, **options)
    return MonoRadarEstimator(model, runtime, device, status, net_size, card, use_radar=(mode == "mono-radar"),
                              **options)
