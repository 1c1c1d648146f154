"""Evaluation and benchmark drivers behind `depth-nodes eval depth|stereo-real` and `bench models`.

They return plain dicts (snake_case keys, units in names) for cliutil.emit_json.
"""
from __future__ import annotations

import time

import numpy as np
from tqdm import tqdm

from depth_nodes.camera import PinholeCamera
from depth_nodes.cliutil import minor_page_faults, timing_summary
from depth_nodes.depth.data import DepthDataset
from depth_nodes.depth.interface import DepthEstimator, DepthInput, make_estimator
from depth_nodes.depth.metrics import DepthMetrics, disparity_metrics
from depth_nodes.depth.model_io import WeightsNotFoundError
from depth_nodes.depth.runtime import RuntimeUnavailableError, memory_retained


#: Middlebury 2014 motorcycle at quarter size (skimage): GT disparities reach ~60 px.
STEREO_REAL_MAX_DISPARITY = 96
BENCH_SIZES = ((320, 240), (640, 480))


def centre_crop(inp: DepthInput, depth: np.ndarray, fraction: float) -> tuple[DepthInput, np.ndarray]:
    """The centred window keeping ``fraction`` of each side: what a camera with the same focal
    length and a narrower field of view would have seen (radar points are unchanged)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"crop fraction must be in (0, 1], got {fraction}")
    cam = inp.camera
    w, h = max(16, int(round(cam.width * fraction))), max(16, int(round(cam.height * fraction)))
    x0, y0 = (cam.width - w) // 2, (cam.height - h) // 2

    def win(a):
        return None if a is None else np.ascontiguousarray(a[y0:y0 + h, x0:x0 + w])

    right_cam = None if inp.right_camera is None else inp.right_camera.cropped(x0, y0, w, h)
    return (DepthInput(win(inp.rgb), cam.cropped(x0, y0, w, h), inp.radar, win(inp.right_rgb), right_cam),
            win(depth))


def eval_dataset(estimator: DepthEstimator, data, split: str = "val", max_frames: int | None = None,
                 max_depth: float | None = None, crop: float | None = None) -> dict:
    """Depth metrics of ``estimator`` on a dataset split at native resolution (pixel-pooled);
    for a stereo estimator also the disparity errors (see :mod:`depth_nodes.depth.metrics`).

    ``crop``: evaluate on the centred window keeping this fraction of each side instead (a
    narrower field of view at the same focal length; see :func:`centre_crop`)."""
    ds = DepthDataset(data, split)
    if len(ds) == 0:
        raise ValueError(f"split {split!r} of {data} has no frames")
    idx = np.arange(len(ds)) if not max_frames else np.linspace(0, len(ds) - 1, min(max_frames, len(ds))).astype(int)
    metrics, times, hfov = DepthMetrics(max_depth), [], None
    for i in tqdm(idx, desc=f"eval {estimator.name}", unit="frame"):
        fr = ds.load(int(i))
        inp, gt = DepthInput(fr.rgb, fr.camera, fr.radar, fr.right, fr.right_camera), fr.depth
        if crop is not None:
            inp, gt = centre_crop(inp, gt, crop)
        hfov = inp.camera.hfov_deg
        out = estimator.estimate(inp)
        metrics.add(out.depth, gt, inp.camera.fx * inp.baseline if estimator.requires_stereo else None)
        times.append(out.timings["total"])
    res = metrics.result()
    res.update(n_frames=len(idx), latency_ms_median=float(np.median(times)), split=split,
               world_seeds=sorted({int(ds.frames[int(i)]["world"]["seed"]) for i in idx}),
               crop=crop, hfov_deg=hfov)
    return res


def eval_stereo_real(weights=None, runtime: str = "torch", max_disparity: int = STEREO_REAL_MAX_DISPARITY,
                     precision: str = "auto") -> dict:
    """Network, SGBM and the hybrid (SGBM, its holes filled by the network; also refined, as
    ``stereo_hybrid_refined``) on Middlebury 2014 motorcycle (skimage.data.stereo_motorcycle,
    quarter size).

    Disparity metrics in pixels at the image's resolution (see metrics.disparity_metrics).
    """
    from skimage import data as skdata

    left, right, gt = skdata.stereo_motorcycle()
    gt = np.where(np.isfinite(gt) & (gt > 0), gt, np.nan).astype(np.float32)
    h, w = gt.shape
    # Intrinsics only set the depth scale; disparity metrics do not depend on them.
    cam = PinholeCamera.from_fov(w, h, 60.0)
    inp = DepthInput(left, cam, right_rgb=right, right_camera=cam.with_baseline(0.1))
    res: dict = {"image_size": [w, h], "gt_disparity_px_max": float(np.nanmax(gt)),
                 "gt_density": float(np.isfinite(gt).mean())}

    from depth_nodes.depth.sgbm import SgbmEstimator

    sgbm = SgbmEstimator(num_disparities=max_disparity)
    disp, _ = sgbm.disparity(left, right)
    res["sgbm"] = {**disparity_metrics(disp, gt), "num_disparities": max_disparity, "status": "classical"}
    try:
        net = make_estimator("stereo", runtime=runtime, weights=weights, max_disparity=max_disparity,
                             net_size=(w, h), precision=precision)
    except WeightsNotFoundError as exc:
        res["stereo_net"] = {"status": "untrained", "reason": str(exc)}
        return res
    disp, _ = net.disparity(inp)
    res["stereo_net"] = {**disparity_metrics(disp, gt), "max_disparity": max_disparity,
                         "status": net.weights_status, "runtime": runtime, "precision": net.precision,
                         "training_steps": net.card.get("training", {}).get("steps")}
    for key, refine in (("stereo_hybrid", False), ("stereo_hybrid_refined", True)):
        hybrid = make_estimator("stereo-hybrid", runtime=runtime, weights=weights, max_disparity=max_disparity,
                                net_size=(w, h), num_disparities=max_disparity, refine=refine, precision=precision)
        disp, _ = hybrid.disparity(inp)
        res[key] = {**disparity_metrics(disp, gt), "max_disparity": max_disparity,
                    "status": hybrid.weights_status, "runtime": runtime, "precision": hybrid.precision}
    return res


def _bench_input(width: int, height: int, rng: np.random.Generator) -> DepthInput:
    cam = PinholeCamera.from_fov(width, height, 90.0)
    left = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    right = np.roll(left, -8, axis=1)
    radar = np.column_stack([rng.uniform(-5, 5, (64, 2)), rng.uniform(1, 30, 64), np.zeros((64, 2))])
    return DepthInput(left, cam, radar.astype(np.float32), right, cam.with_baseline(0.1))


def _store_timing(res: dict, key: str, t: dict) -> None:
    """``key`` (ending in ``_ms``) gets the median; ``..._min_ms`` the fastest run (less load noise);
    ``..._page_faults`` the minor page faults per run."""
    res[key] = t["median_ms"]
    res[key[: -len("_ms")] + "_min_ms"] = t["min_ms"]
    res[key[: -len("_ms")] + "_page_faults"] = t["page_faults"]


def bench_models(runtimes=("torch", "onnx"), sizes=BENCH_SIZES, repeat: int = 20, weights: str = "random-init",
                 device: str = "cpu", warmup: int = 3) -> dict:
    """Latency (ms, end-to-end ``estimate``) per model x runtime x size, SGBM in the same run.

    The cases take turns: each of ``warmup + repeat`` rounds runs every case once, so a host
    that slows down for a while (a shared machine) slows every case alike, and their ratios
    hold even where the absolute times drift.

    Keys: ``{model}_{WxH}_ms`` (torch), ``{model}_onnx_{WxH}_ms`` (onnxruntime),
    ``sgbm_{WxH}_ms`` (medians; ``*_min_ms``: fastest run; ``*_page_faults``: minor page faults
    per run); ``freed_memory_retained``: whether the torch runtime made the process keep the
    memory it frees (:func:`~depth_nodes.depth.runtime.retain_freed_memory`); ``torch_frozen``:
    whether it ran the networks as frozen graphs (:class:`~depth_nodes.depth.runtime.TorchBackend`;
    ``DEPTH_NODES_TORCH_FREEZE=0`` to compare eager); plus params
    and GMAC of each network
    (``stereo_near_pass_gmac_{WxH}``: the stereo estimator's second, half-size run, timed in its ms).
    ``stereo_hybrid``: the stereo network and SGBM (one after the other on the CPU); the stereo
    network's params and GMAC are not repeated. ``stereo_hybrid_refined``: the same, then the
    refiner, whose params and GMAC are ``stereo_refine_params`` and ``stereo_refine_gmac_{WxH}``
    (it runs at the camera's resolution).
    A runtime that cannot run here is reported as ``{model}_{runtime}_unavailable`` (the reason).
    ``weights``: ``"random-init"`` (the packaged architectures with random weights, at the
    camera's size), None (the packaged weights, at their cards' input sizes:
    ``{model}_input_size_{WxH}`` where that differs from the camera's, and the GMAC there) or a
    ``.safetensors`` path.
    """
    from depth_nodes.depth.flops import count_macs, count_params
    import torch

    rng = np.random.default_rng(0)
    res: dict = {"weights": weights or "packaged", "repeat": repeat, "batch": 1, "interleaved": True}
    inputs = {(w, h): _bench_input(w, h, rng) for w, h in sizes}
    # the hybrid runs the stereo network (same parameters and GMAC) plus SGBM beside it
    cases = (("mono_radar", "mono-radar", {}), ("stereo", "stereo", {}), ("stereo_hybrid", "stereo-hybrid", {}),
             ("stereo_hybrid_refined", "stereo-hybrid", {"refine": True}))
    timed = []  # (result key, estimator, input)
    for model, mode, options in cases:
        for rt in runtimes:
            try:
                est = make_estimator(mode, runtime=rt, device=device, weights=weights, **options)
            except RuntimeUnavailableError as exc:  # e.g. no TensorRT here: report, keep benchmarking
                res[f"{model}_{rt}_unavailable"] = str(exc)
                continue
            network_info = rt == runtimes[0] and mode != "stereo-hybrid"
            if network_info:
                res[f"{model}_params"] = count_params(est.model)
            for w, h in sizes:
                key = f"{model}_{w}x{h}_ms" if rt == "torch" else f"{model}_{rt}_{w}x{h}_ms"
                timed.append((key, est, inputs[w, h]))
                if network_info:
                    cam = inputs[w, h].camera
                    nw, nh = est.net_camera(cam).size  # trained weights: their card's size
                    if (nw, nh) != (w, h):
                        res[f"{model}_input_size_{w}x{h}"] = [nw, nh]
                    x = torch.zeros(1, 3, nh, nw)
                    second = torch.zeros(1, 2, nh, nw) if model == "mono_radar" else x
                    res[f"{model}_gmac_{w}x{h}"] = count_macs(est.model, x, second) / 1e9
                    half = est.near_pass_size(cam) if hasattr(est, "near_pass_size") else None
                    if half:
                        x = torch.zeros(1, 3, half[1], half[0])  # the same network on the half-size pair
                        res[f"{model}_near_pass_gmac_{w}x{h}"] = count_macs(est.model, x, x) / 1e9
                if rt == runtimes[0] and getattr(est, "refiner", None) is not None:
                    res["stereo_refine_params"] = count_params(est.refiner.model)
                    img, one, two = (torch.zeros(1, c, h, w) for c in (3, 1, 2))
                    res[f"stereo_refine_gmac_{w}x{h}"] = count_macs(est.refiner.model, img, img, one, two) / 1e9
    sgbm = make_estimator("sgbm")
    timed += [(f"sgbm_{w}x{h}_ms", sgbm, inputs[w, h]) for w, h in sizes]
    times: dict[str, list] = {key: [] for key, _, _ in timed}
    faults = dict.fromkeys(times, 0)
    for r in tqdm(range(warmup + repeat), desc=f"bench models ({len(timed)} cases a round)", unit="round"):
        for key, est, inp in timed:
            f0, t0 = minor_page_faults(), time.perf_counter()
            est.estimate(inp)
            if r >= warmup:
                times[key].append((time.perf_counter() - t0) * 1e3)
                faults[key] += minor_page_faults() - f0
    for key in times:
        _store_timing(res, key, timing_summary(times[key], faults[key]))
    res["freed_memory_retained"] = memory_retained()
    runners = [est.runner for _, est, _ in timed if getattr(est, "runtime", None) == "torch"]
    if runners:
        res["torch_frozen"] = all(r.frozen for r in runners)
    return res
