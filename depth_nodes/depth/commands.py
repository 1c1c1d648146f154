"""CLI subcommands of the depth layer: train, export onnx, eval depth/stereo-real, bench models."""
from __future__ import annotations

import argparse
import logging
import shlex

from depth_nodes.cliutil import add_json_flag, emit_json, run_info

log = logging.getLogger(__name__)


def _print_flat(obj: dict, prefix: str = "") -> None:
    """Human-readable ``key: value`` lines (nested dicts as dotted keys)."""
    for key, value in obj.items():
        if isinstance(value, dict):
            _print_flat(value, f"{prefix}{key}.")
        else:
            text = f"{value:.4f}" if isinstance(value, float) else str(value)
            print(f"{prefix}{key}: {text}")


def _report(args, result: dict) -> None:
    """One JSON object on stdout with --json, else a readable listing."""
    if args.json:
        emit_json(result)
    else:
        _print_flat(result)


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"size must look like 320x240, got {text!r}") from None
    if w < 16 or h < 16:
        raise ValueError(f"size must be at least 16x16, got {text!r}")
    return w, h


def _threads(args) -> int:
    """Apply --threads to torch (onnxruntime sessions follow torch.get_num_threads())."""
    import torch

    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    return args.threads


def _add_threads(p) -> None:
    p.add_argument("--threads", type=int, default=2, help="torch/onnxruntime CPU threads (default 2)")


def _skip_kernel(text: str):
    """``--skip-kernel``: ``1``/``3`` or four of them, comma-separated (one per decoder level)."""
    from depth_nodes.depth.mono_radar_net import skip_kernels

    try:
        values = [int(v) for v in text.split(",")]
        skip_kernels(values[0] if len(values) == 1 else values)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected 1, 3 or four of them such as 3,3,1,1, got {text!r}") from exc
    return values[0] if len(values) == 1 else tuple(values)


def _train_command(args) -> str:
    """The exact command line (all options explicit, defaults included) that reproduces this run."""
    parts = ["depth-nodes", "train", args.task]
    for opt in ("data", "minutes", "out", "resume", "batch", "seed", "lr", "steps", "size", "workers",
                "max_disparity", "checkpoint_minutes", "device", "threads"):
        value = getattr(args, opt)
        if value is not None:
            parts += ["--" + opt.replace("_", "-"), str(value)]
    if args.no_return_far:
        parts.append("--no-return-far")
    for opt in ("rel_weight", "crop_aug", "local_radius", "init", "freeze", "stereo_weights", "teacher"):  # if used
        if getattr(args, opt):
            parts += ["--" + opt.replace("_", "-"), str(getattr(args, opt))]
    if args.coarse_decoder:
        parts.append("--coarse-decoder")
    if args.skip_kernel != 3:  # if not the 3x3 default
        kernels = args.skip_kernel
        parts += ["--skip-kernel", ",".join(map(str, kernels)) if isinstance(kernels, tuple) else str(kernels)]
    if args.head_kernel != 3:
        parts += ["--head-kernel", str(args.head_kernel)]
    if args.teacher:
        parts += ["--teacher-weight", str(args.teacher_weight)]
    return " ".join(shlex.quote(p) for p in parts)


def cmd_train(args) -> int:
    from depth_nodes.depth.train import TrainConfig, train

    _threads(args)
    cfg = TrainConfig(task=args.task, data=args.data, minutes=args.minutes, out=args.out, batch=args.batch,
                      seed=args.seed, lr=args.lr, steps=args.steps, size=_size(args.size) if args.size else None,
                      workers=args.workers, max_disparity=args.max_disparity,
                      checkpoint_minutes=args.checkpoint_minutes, device=args.device,
                      no_return_far=args.no_return_far, rel_weight=args.rel_weight, crop_aug=args.crop_aug,
                      local_radius=args.local_radius, coarse_decoder=args.coarse_decoder,
                      skip_kernel=args.skip_kernel, head_kernel=args.head_kernel, init=args.init,
                      freeze=tuple(n for n in (args.freeze or "").split(",") if n), stereo_weights=args.stereo_weights,
                      teacher=args.teacher, teacher_weight=args.teacher_weight)
    command = _train_command(args)
    summary = train(cfg, resume=args.resume, command=command)
    log.info("wrote %s after %d steps", summary["weights"], summary["steps"])
    _report(args, {**summary, **run_info(data=args.data, seed=args.seed, device=args.device, threads=args.threads)})
    return 0


def cmd_export_onnx(args) -> int:
    import numpy as np

    from depth_nodes.depth.model_io import MODEL_FOR_MODE, fold_batchnorm
    from depth_nodes.depth.runtime import export_onnx, load_network

    model_name = MODEL_FOR_MODE[args.model]
    model, _, status = load_network(model_name, args.weights)
    w, h = _size(args.size)
    second = 2 if model_name == "mono_radar" else 3
    # the graph the onnx runtime runs: BatchNorm folded into the convolutions before it
    inputs = [np.zeros((1, 3, h, w), np.float32), np.zeros((1, second, h, w), np.float32)]
    export_onnx(fold_batchnorm(model.eval()), inputs, args.out)
    log.info("exported %s (%s weights) at %dx%d to %s", args.model, status, w, h, args.out)
    return 0


def cmd_eval_depth(args) -> int:
    from depth_nodes.depth.evaluate import eval_dataset
    from depth_nodes.depth.interface import STEREO_MODES, make_estimator

    threads = _threads(args)
    options = {}  # make_estimator rejects an option the mode does not take
    if args.max_disparity is not None:
        if args.mode not in STEREO_MODES:
            raise ValueError(f"--max-disparity applies to the stereo modes only, not {args.mode!r}")
        options["num_disparities" if args.mode == "sgbm" else "max_disparity"] = args.max_disparity
    if args.sgbm_passes is not None:
        options["passes"] = args.sgbm_passes
    if args.sgbm_agreement is not None:
        if args.mode == "sgbm":
            if args.sgbm_agreement == "nearest":
                raise ValueError("--sgbm-agreement nearest needs the network: it applies to stereo-hybrid only")
            options["require_agreement"] = args.sgbm_agreement == "all"
        elif args.mode == "stereo-hybrid":
            options["agreement"] = args.sgbm_agreement
        else:
            raise ValueError(f"--sgbm-agreement applies to sgbm and stereo-hybrid, not {args.mode!r}")
    if args.no_near_pass:
        if args.mode not in STEREO_MODES:
            raise ValueError(f"--no-near-pass applies to the stereo modes only, not {args.mode!r}")
        options["near_pass"] = False
    if args.refine or args.refine_weights:
        if args.mode != "stereo-hybrid":
            raise ValueError(f"--refine and --refine-weights apply to stereo-hybrid only, not {args.mode!r}")
        options.update(refine=True, refine_weights=args.refine_weights)
    for key in ("texture_min", "nearest_max_gap"):  # the hybrid's own options
        if getattr(args, key) is not None:
            if args.mode != "stereo-hybrid":
                flag = "--" + key.replace("_", "-")
                raise ValueError(f"{flag} applies to stereo-hybrid only, not {args.mode!r}")
            options[key] = getattr(args, key)
    est = make_estimator(args.mode, runtime=args.runtime, device=args.device, weights=args.weights,
                         precision=args.precision, **options)
    res = eval_dataset(est, args.data, args.split, args.max_frames, args.max_depth, args.crop)
    runtime = None if args.mode == "sgbm" else args.runtime
    _report(args, {"mode": args.mode, "runtime": runtime, "precision": getattr(est, "precision", None),
                   "weights": est.weights_status,
                   "max_disparity": args.max_disparity, "sgbm_passes": args.sgbm_passes,
                   "sgbm_agreement": args.sgbm_agreement,
                   "near_pass": getattr(est, "near_pass", None),
                   "refine": (est.refiner is not None) if args.mode == "stereo-hybrid" else None,
                   "texture_min": getattr(est, "texture_min", None),
                   "nearest_max_gap": getattr(est, "nearest_max_gap", None), **res,
                   **run_info(data=args.data, seed=None, device=args.device, threads=threads)})
    return 0


def cmd_eval_stereo_real(args) -> int:
    from depth_nodes.depth.evaluate import eval_stereo_real

    threads = _threads(args)
    res = eval_stereo_real(args.weights, args.runtime, args.max_disparity, args.precision)
    _report(args, {**res, **run_info(data="skimage.data.stereo_motorcycle (Middlebury 2014, quarter size)",
                                     seed=None, device="cpu", threads=threads)})
    return 0


def cmd_bench_models(args) -> int:
    from depth_nodes.depth.evaluate import bench_models

    threads = _threads(args)
    runtimes = tuple(args.runtimes.split(","))
    bad = [r for r in runtimes if r not in ("torch", "onnx", "tensorrt")]
    if bad:
        raise ValueError(f"--runtimes entries must be torch, onnx or tensorrt, got {bad}")
    sizes = tuple(_size(s) for s in args.sizes.split(","))
    weights = None if args.weights == "packaged" else args.weights
    res = bench_models(runtimes=runtimes, sizes=sizes, repeat=args.repeat, weights=weights, device=args.device)
    _report(args, {**res, **run_info(data="random images", seed=0, device=args.device, threads=threads)})
    return 0


def _add_precision(p) -> None:
    from depth_nodes.depth.interface import PRECISIONS

    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="network arithmetic (auto: fp16 on cuda, fp32 on cpu; fp16 on the cpu, with runtime torch, "
                        "checks the GPU path's accuracy: slow)")


def register(groups) -> None:
    from depth_nodes.depth.interface import DEVICES, MODES, RUNTIMES

    helps = {"mono": "train the mono+radar depth network on a sim dataset",
             "stereo": "train the stereo depth network on a sim dataset",
             "refine": "train the stereo hybrid's refiner on a sim dataset (on worlds the stereo network was "
                       "not trained on)"}
    for task in ("mono", "stereo", "refine"):
        p = groups["train"].add_parser(task, help=helps[task])
        p.add_argument("--data", required=True, help="dataset directory (depth-nodes sim dataset)")
        p.add_argument("--minutes", type=float, required=True, help="total time budget (resumed time counts)")
        p.add_argument("--out", default=f"runs/train_{task}", help="output directory")
        p.add_argument("--resume", default=None, help="checkpoint.json (or its directory) to continue from")
        p.add_argument("--batch", type=int, default=8)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--lr", type=float, default=1e-3)
        p.add_argument("--steps", type=int, default=None, help="stop after this many optimizer steps in total")
        p.add_argument("--size", default=None, help="network input WxH (default: dataset resolution)")
        p.add_argument("--workers", type=int, default=0, help="data loader worker processes")
        p.add_argument("--max-disparity", type=int, default=64, help="stereo search range in px (multiple of 4)")
        p.add_argument("--checkpoint-minutes", type=float, default=5.0, help="checkpoint period")
        p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
        p.add_argument("--init", default=None,
                       help="start from these weights (.safetensors) instead of random ones; they may be "
                            "a narrower variant (e.g. stereo without --local-radius): new input channels "
                            "start at zero. Ignored with --resume")
        p.add_argument("--freeze", default=None,
                       help="comma list of the network's top-level parts to keep as they are (e.g. stem,"
                            "quarter,aggregate of the stereo network: train its refinement only)")
        p.add_argument("--no-return-far", action="store_true",
                       help="pixels without GT depth (a simulated sky: no surface) are trained as far away "
                            "(stereo: toward zero disparity; mono: at least 30 m); without it they are ignored "
                            "and the network guesses there. Only for data whose missing depth means no surface")
        if task == "stereo":
            p.add_argument("--local-radius", type=int, default=0,
                           help="refinement also correlates the two images at 1/2 resolution at each whole-pixel "
                                "offset up to this many px either side of the coarse disparity (0: not)")
        if task == "refine":
            p.add_argument("--stereo-weights", default=None,
                           help="stereo network (.safetensors) whose hybrid output is refined (default: packaged); "
                                "world seeds in its card's train_world_seeds are left out of the data")
        if task == "mono":
            p.add_argument("--rel-weight", type=float, default=0.0,
                           help="weight of a relative-error term |pred-gt|/gt (the abs_rel metric) added to "
                                "the scale-invariant loss; 0 leaves it out")
            p.add_argument("--crop-aug", type=float, default=0.0,
                           help="probability that a batch is randomly cropped (60-100 %% of each side, same "
                                "focal length): trains for cameras with narrower fields of view. The card then "
                                "marks the network focal-normalised: inputs are resampled to its focal length")
            p.add_argument("--coarse-decoder", action="store_true",
                           help="each decoder level convolves the coarser map at its own resolution before "
                                "upsampling it (0.74 instead of 0.95 GMAC at 320x240, same parameters); with "
                                "--init from a network without it, its kernels are adapted as a starting point")
            p.add_argument("--skip-kernel", type=_skip_kernel, default=3,
                           help="1: each decoder level mixes the encoder's skip features with a 1x1 "
                                "convolution (needs --coarse-decoder; with --head-kernel 1: 0.60 GMAC at "
                                "320x240); or one kernel per level, coarsest first, e.g. 3,3,1,1. --init from "
                                "a 3x3 network starts each 1x1 kernel from the sum of its 3x3 taps")
            p.add_argument("--head-kernel", type=int, choices=(1, 3), default=3,
                           help="kernel of the output head (1 or 3)")
            p.add_argument("--teacher", default=None,
                           help="mono+radar weights (.safetensors): pixels without GT depth (a simulated sky) "
                                "are trained toward that network's depth on the same input, so a new network "
                                "keeps its answer where the data has none")
            p.add_argument("--teacher-weight", type=float, default=1.0,
                           help="weight of that term (mean |log depth - teacher's log depth|)")
        _add_threads(p)
        add_json_flag(p)
        p.set_defaults(func=cmd_train, task=task, rel_weight=0.0, crop_aug=0.0, local_radius=0, stereo_weights=None,
                       coarse_decoder=False, skip_kernel=3, head_kernel=3, teacher=None, teacher_weight=1.0)

    p = groups["export"].add_parser("onnx", help="export a depth network to ONNX (static shapes)")
    p.add_argument("--model", choices=("mono-radar", "stereo"), required=True)
    p.add_argument("--out", required=True, help="output .onnx file")
    p.add_argument("--size", default="320x240", help="input WxH baked into the graph")
    p.add_argument("--weights", default=None, help=".safetensors (default: packaged) or random-init")
    p.set_defaults(func=cmd_export_onnx)

    p = groups["eval"].add_parser("depth", help="depth metrics of an estimator on a sim dataset")
    p.add_argument("--data", required=True)
    p.add_argument("--mode", choices=MODES, required=True)
    p.add_argument("--runtime", choices=RUNTIMES, default="auto", help="auto: onnx on cpu, torch on cuda")
    p.add_argument("--device", choices=DEVICES, default="cpu")
    _add_precision(p)
    p.add_argument("--weights", default=None, help=".safetensors (default: packaged)")
    p.add_argument("--split", choices=("val", "train", "all"), default="val",
                   help="held-out world seeds (val) by default")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--max-depth", type=float, default=None, help="ignore GT beyond this range (m)")
    p.add_argument("--max-disparity", type=int, default=None,
                   help="stereo modes: disparity search range in px (network: at its input resolution, a "
                        "multiple of 4; SGBM: at the camera's, a multiple of 16; default: the network's trained "
                        "range, SGBM's default). The nearest depth a rig can match is fx * baseline / range")
    p.add_argument("--sgbm-passes", type=int, default=None,
                   help="sgbm, stereo-hybrid: SGBM passes averaged against pixel locking and path lag "
                        "(default 2; 1: OpenCV's single pass)")
    p.add_argument("--sgbm-agreement", choices=("all", "first", "nearest"), default=None,
                   help="sgbm, stereo-hybrid with several passes, where the passes disagree by 1 px or more: "
                        "all: the pixel is not SGBM's (sgbm's default; the hybrid takes the network's); first: "
                        "the first pass's; nearest (stereo-hybrid only, its default): the pass nearest the "
                        "network's disparity")
    p.add_argument("--no-near-pass", action="store_true",
                   help="stereo modes: skip the half-resolution near pass (the network's, or SGBM's for sgbm), "
                        "which finds surfaces nearer than the full-resolution search range reaches")
    p.add_argument("--refine", action="store_true",
                   help="stereo-hybrid: refine the fused disparity with the learned refiner (off by default: "
                        "more accurate held out, but it flew worse; see README)")
    p.add_argument("--refine-weights", default=None,
                   help="stereo-hybrid: refiner .safetensors (implies --refine; default: packaged stereo_refine)")
    p.add_argument("--texture-min", type=float, default=None,
                   help="stereo-hybrid: drop SGBM's matches where the left image's horizontal texture (mean "
                        "|Sobel x| of the grey image, 0-255 scale) is below this, and take the network's there "
                        "(default: the estimator's)")
    p.add_argument("--nearest-max-gap", type=float, default=None,
                   help="stereo-hybrid: where SGBM's passes disagree and none lies within this many px (at "
                        "the network's input size) of the network's disparity, take the network's "
                        "(default: the estimator's, no limit)")
    p.add_argument("--crop", type=float, default=None,
                   help="evaluate on the centred window keeping this fraction of each side: a camera with "
                        "the same focal length and a narrower field of view (e.g. 0.75: 90 -> 74 deg)")
    _add_threads(p)
    add_json_flag(p)
    p.set_defaults(func=cmd_eval_depth)

    p = groups["eval"].add_parser("stereo-real", help="stereo net vs SGBM on Middlebury motorcycle (skimage)")
    p.add_argument("--weights", default=None, help="stereo .safetensors (default: packaged)")
    p.add_argument("--runtime", choices=("torch", "onnx"), default="torch")
    _add_precision(p)
    p.add_argument("--max-disparity", type=int, default=96, help="search range px (multiple of 16)")
    _add_threads(p)
    add_json_flag(p)
    p.set_defaults(func=cmd_eval_stereo_real)

    p = groups["bench"].add_parser("models", help="latency of depth networks and SGBM (320x240, 640x480)")
    p.add_argument("--runtimes", default="torch,onnx", help="comma list of torch,onnx,tensorrt")
    p.add_argument("--sizes", default="320x240,640x480", help="comma list of WxH input sizes")
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--weights", default="random-init",
                   help="random-init (default: every network at the camera's size; latency does not depend "
                        "on the weights), packaged (the shipped estimators as deployed: each network at its "
                        "card's input size, e.g. mono+radar at 160x120) or a .safetensors path")
    p.add_argument("--device", choices=DEVICES, default="cpu")
    _add_threads(p)
    add_json_flag(p)
    p.set_defaults(func=cmd_bench_models)
