"""Time-budgeted training of the depth networks with checkpoints and resume.

``task``: ``mono`` trains :class:`MonoRadarNet` (radar dropout makes the same
weights serve ``mono`` and ``mono-radar``), ``stereo`` trains
:class:`StereoNet`, ``refine`` trains the stereo hybrid's :class:`DisparityRefiner`
on the hybrid's output for frames of worlds the stereo network was not trained on
(:mod:`refine_data`). Checkpoints (all pickle-free) in ``out``:
``checkpoint.safetensors`` (model), ``checkpoint_optim.safetensors``
(AdamW moments) and ``checkpoint.json`` (step, epoch, elapsed seconds,
learning rates, arguments). At the end ``out/<model>.safetensors`` + model card
``out/<model>.json`` (architecture, params, GMAC, data, command, validation
metrics) are written; copy both into ``depth_nodes/depth/weights/`` to ship.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from depth_nodes.depth.data import DepthDataset
from depth_nodes.depth.disparity import disparity_to_depth
from depth_nodes.depth.flops import count_macs, count_params
from depth_nodes.depth.losses import mono_loss, refine_loss, stereo_loss
from depth_nodes.depth.metrics import DepthMetrics, disparity_metrics
from depth_nodes.depth.mono_radar_net import decoder_kernels, skip_kernels
from depth_nodes.depth.model_io import (ARCH_FOR_MODEL, build_model, card_config, init_from_weights, load_weights,
                                        save_weights)

log = logging.getLogger(__name__)

TASKS = {"mono": "mono_radar", "stereo": "stereo", "refine": "stereo_refine"}
CKPT = "checkpoint"
#: Input channels of each task's network (the model card's MAC count runs it on 320x240 zeros).
INPUT_CHANNELS = {"mono": (3, 2), "stereo": (3, 3), "refine": (3, 3, 1, 2)}
WARMUP_STEPS = 100
#: ``crop_aug``: each side of a cropped batch keeps a uniform fraction in [CROP_MIN, 1] of the frame.
CROP_MIN = 0.6


@dataclass
class TrainConfig:
    """Arguments of one training run (stored in checkpoints and the model card)."""

    task: str
    data: str
    minutes: float
    out: str = "runs/train"
    batch: int = 8
    seed: int = 0
    lr: float = 1e-3
    steps: int | None = None
    size: tuple[int, int] | None = None
    workers: int = 0
    val_fraction: float = 0.2
    val_frames: int = 64
    checkpoint_minutes: float = 5.0
    max_disparity: int = 64
    device: str = "cpu"
    no_return_far: bool = False   # pixels without GT depth (simulated sky) are trained as far away
    rel_weight: float = 0.0       # mono: weight of the relative-error (abs_rel) loss term
    crop_aug: float = 0.0         # mono: probability that a batch is cropped (same focal, narrower view)
    local_radius: int = 0         # stereo: StereoNet local_radius (1/2-resolution correlation offsets)
    coarse_decoder: bool = False  # mono: MonoRadarNet coarse_decoder (each level's coarse part at its own resolution)
    skip_kernel: int | tuple = 3  # mono: MonoRadarNet skip_kernel (1: the skip features through 1x1 convolutions)
    head_kernel: int = 3          # mono: MonoRadarNet head_kernel
    init: str | None = None       # weights (.safetensors) of the same or a narrower network to start from
    teacher: str | None = None    # mono: weights whose output pixels without GT are trained toward
    teacher_weight: float = 1.0   # mono: weight of that term
    freeze: tuple[str, ...] = ()  # top-level submodules kept as they are (no gradient, BatchNorm statistics fixed)
    stereo_weights: str | None = None  # refine: the stereo network whose hybrid is refined (None: packaged)

    def validate(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {sorted(TASKS)}, got {self.task!r}")
        if not self.minutes > 0:
            raise ValueError(f"minutes must be > 0, got {self.minutes}")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {self.device!r}")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device='cuda' requested but torch.cuda.is_available() is False")
        if self.rel_weight < 0 or (self.rel_weight > 0 and self.task != "mono"):
            raise ValueError(f"rel_weight must be >= 0 and is for task 'mono' only, got {self.rel_weight} "
                             f"for {self.task!r}")
        if not 0.0 <= self.crop_aug <= 1.0 or (self.crop_aug > 0 and self.task != "mono"):
            raise ValueError(f"crop_aug must be in [0, 1] and is for task 'mono' only, got {self.crop_aug} "
                             f"for {self.task!r}")
        if self.local_radius < 0 or (self.local_radius and self.task != "stereo"):
            raise ValueError(f"local_radius must be >= 0 and is for task 'stereo' only, got {self.local_radius} "
                             f"for {self.task!r}")
        if self.coarse_decoder and self.task != "mono":
            raise ValueError(f"coarse_decoder is for task 'mono' only, got {self.task!r}")
        kernels = decoder_kernels(self.coarse_decoder, self.skip_kernel, self.head_kernel)
        if (kernels, self.head_kernel) != ((3, 3, 3, 3), 3) and self.task != "mono":
            raise ValueError(f"skip_kernel and head_kernel are for task 'mono' only, got {self.task!r}")
        if self.task == "refine" and (self.size is not None or self.no_return_far):
            raise ValueError("the refiner trains at the dataset's resolution on pixels with GT only: "
                             "size and no_return_far do not apply to task 'refine'")
        if self.stereo_weights is not None and (self.task != "refine" or not Path(self.stereo_weights).is_file()):
            raise ValueError(f"stereo_weights is for task 'refine' and must exist, got {self.stereo_weights!r} "
                             f"for {self.task!r}")
        if self.teacher is not None and (self.task != "mono" or not Path(self.teacher).is_file()):
            raise ValueError(f"teacher is for task 'mono' and must exist, got {self.teacher!r} for {self.task!r}")
        if not self.teacher_weight > 0:
            raise ValueError(f"teacher_weight must be > 0, got {self.teacher_weight}")
        if self.init is not None and not Path(self.init).is_file():
            raise ValueError(f"init weights {self.init} not found")
        if self.batch < 1 or (self.steps is not None and self.steps < 1):
            raise ValueError(f"batch and steps must be >= 1, got batch={self.batch} steps={self.steps}")


def save_optimizer(opt: torch.optim.Optimizer, path: Path) -> list[dict]:
    """Optimizer tensors -> safetensors at ``path``; returns the JSON-able param groups."""
    sd = opt.state_dict()
    tensors = {f"{idx}.{k}": (v if torch.is_tensor(v) else torch.tensor(v)).detach().cpu().contiguous()
               for idx, st in sd["state"].items() for k, v in st.items()}
    save_file(tensors, str(path))
    return [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]


def load_optimizer(opt: torch.optim.Optimizer, path: Path, groups: list[dict]) -> None:
    """Inverse of :func:`save_optimizer`."""
    state: dict[int, dict] = {}
    for key, v in load_file(str(path)).items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = v
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in groups]
    opt.load_state_dict({"state": state, "param_groups": groups})


def lr_at(cfg: TrainConfig, step: int, elapsed_s: float) -> float:
    """Linear warm-up, then cosine decay over the time (or step) budget."""
    warm = min(1.0, (step + 1) / WARMUP_STEPS)
    frac = elapsed_s / (cfg.minutes * 60.0)
    if cfg.steps:
        frac = max(frac, step / cfg.steps)
    return cfg.lr * warm * 0.5 * (1.0 + math.cos(math.pi * min(1.0, frac)))


def crop_batch(batch: dict, rng: np.random.Generator, min_fraction: float = CROP_MIN) -> dict:
    """One random window size for the whole batch, each sample at its own random offset.

    The crop keeps the pixel focal length, so the network sees what a camera with a narrower
    field of view (and any aspect) would see at the same focal: with a focal-normalised input
    (see runtime.MonoRadarEstimator) the network then serves such cameras too."""
    h, w = batch["image"].shape[-2:]
    ch = max(16, int(round(h * rng.uniform(min_fraction, 1.0))))
    cw = max(16, int(round(w * rng.uniform(min_fraction, 1.0))))
    ys = rng.integers(0, h - ch + 1, len(batch["image"]))
    xs = rng.integers(0, w - cw + 1, len(batch["image"]))
    return {k: torch.stack([v[i, ..., y:y + ch, x:x + cw] for i, (y, x) in enumerate(zip(ys, xs))])
            for k, v in batch.items()}


def _model_kwargs(cfg: TrainConfig) -> dict:
    if cfg.task == "mono":
        kwargs = {"coarse_decoder": True} if cfg.coarse_decoder else {}
        if skip_kernels(cfg.skip_kernel) != (3, 3, 3, 3):
            kwargs["skip_kernel"] = cfg.skip_kernel
        if cfg.head_kernel != 3:
            kwargs["head_kernel"] = cfg.head_kernel
        return kwargs
    if cfg.task != "stereo":
        return {}
    return {"max_disparity": cfg.max_disparity, "local_radius": cfg.local_radius}


def freeze_modules(model: torch.nn.Module, names) -> None:
    """Keep the named top-level submodules of ``model`` as they are: no gradients, and in eval
    mode, so their BatchNorm statistics stay fixed (call after ``model.train()``)."""
    children = dict(model.named_children())
    unknown = sorted(set(names) - set(children))
    if unknown:
        raise ValueError(f"cannot freeze {unknown}: {type(model).__name__} has {sorted(children)}")
    for name in names:
        children[name].requires_grad_(False)
        children[name].eval()
    if names and not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"freezing {list(names)} leaves nothing to train")


def to_device(batch: dict, device: torch.device) -> dict:
    """Move a collated batch to ``device`` (non-blocking from pinned memory)."""
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def validate(model, task: str, loader, baseline: float, fx: float) -> dict:
    """Depth metrics (and disparity metrics for stereo) on the validation loader; for the refiner
    also ``input``, the metrics of the hybrid's disparity it started from."""
    model.eval()
    device = next(model.parameters()).device
    dm, disp_stats, before = DepthMetrics(), [], DepthMetrics()
    with torch.no_grad():
        for batch in loader:
            gt = torch.where(batch["valid"] > 0, batch["depth"], torch.nan).numpy()
            dev = to_device(batch, device)
            if task == "mono":
                pred = model(dev["image"], dev["radar"])[0].cpu().numpy()
            elif task == "refine":
                disp = model(dev["image"], dev["right"], dev["hybrid"], dev["source"])[0].cpu().numpy()
                pred = disparity_to_depth(disp, fx, baseline)
                before.add(disparity_to_depth(batch["hybrid"].numpy(), fx, baseline), gt)
            else:
                disp = model(dev["image"], dev["right"])[0].cpu().numpy()
                pred = disparity_to_depth(disp, fx, baseline)
                gt_disp = np.where(batch["valid"].numpy() > 0, batch["disparity"].numpy(), np.nan)
                if np.isfinite(gt_disp).any():
                    disp_stats.append(disparity_metrics(disp, gt_disp))
            dm.add(pred, gt)
    model.train()
    res = dm.result()
    if task == "refine":  # the hybrid's own error on the same frames, for comparison
        res["input"] = before.result()
    if disp_stats:
        for k in ("epe", "bad1", "bad2", "bad4"):
            vals = [d[k] for d in disp_stats if d[k] is not None]
            res[k] = float(np.mean(vals)) if vals else None
    return res


def _reseed_worker(worker_id: int) -> None:
    """Give each DataLoader worker its own augmentation stream (seeded by torch per epoch)."""
    info = torch.utils.data.get_worker_info()
    info.dataset.reseed(torch.initial_seed() % 2**32, worker_id)


def train(cfg: TrainConfig, resume=None, command: str | None = None) -> dict:
    """Run training; returns a summary dict (paths, steps, validation metrics)."""
    cfg.validate()
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    stereo = cfg.task == "stereo"
    if cfg.task == "refine":
        from depth_nodes.depth.refine_data import RefineDataset

        common = {"cache": out / "hybrid_cache", "stereo_weights": cfg.stereo_weights,
                  "val_fraction": cfg.val_fraction, "device": cfg.device}
        train_set = RefineDataset(cfg.data, "train", augment=True, seed=cfg.seed, **common)
        val_set = RefineDataset(cfg.data, "val", crop=None, **common)
    else:
        train_set = DepthDataset(cfg.data, "train", cfg.size, augment=True, stereo=stereo, seed=cfg.seed,
                                 val_fraction=cfg.val_fraction)
        val_set = DepthDataset(cfg.data, "val", cfg.size, augment=False, stereo=stereo,
                               val_fraction=cfg.val_fraction)
    if len(train_set) == 0:
        raise ValueError(f"no training frames in {cfg.data}")
    if len(val_set) == 0:
        log.warning("only one world seed in %s: no held-out validation", cfg.data)
    gen = torch.Generator().manual_seed(cfg.seed)
    device = torch.device(cfg.device)
    cuda = device.type == "cuda"
    if cuda:  # fp32 with TF32 matmuls: the heads need more precision than bf16 autocast gives
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    loader = torch.utils.data.DataLoader(train_set, batch_size=cfg.batch, shuffle=True, drop_last=False,
                                         num_workers=cfg.workers, generator=gen, worker_init_fn=_reseed_worker,
                                         pin_memory=cuda, persistent_workers=cfg.workers > 0)
    val_idx = np.linspace(0, len(val_set) - 1, min(len(val_set), cfg.val_frames)).astype(int) if len(val_set) else []
    val_loader = torch.utils.data.DataLoader(torch.utils.data.Subset(val_set, list(val_idx)), batch_size=cfg.batch)

    model_name = TASKS[cfg.task]
    model = build_model(ARCH_FOR_MODEL[model_name], _model_kwargs(cfg)).to(device).train()
    if cfg.init is not None and resume is None:
        counts = init_from_weights(model, cfg.init)
        log.info("started from %s (%d tensors copied, %d widened)", cfg.init, counts["copied"], counts["widened"])
        if getattr(model, "coarse_decoder", False) and not card_config(cfg.init).get("coarse_decoder", False):
            model.adopt_fine_decoder_()
            log.info("adapted the fine decoder's kernels of %s to the coarse decoder", cfg.init)
    freeze_modules(model, cfg.freeze)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=1e-4)
    step, epoch, elapsed0 = 0, 0, 0.0
    if resume is not None:
        step, epoch, elapsed0 = load_checkpoint(Path(resume), model, opt)
        log.info("resumed from %s at step %d", resume, step)
    teacher = None
    if cfg.teacher is not None:
        teacher, _ = load_weights(cfg.teacher)
        teacher.to(device).requires_grad_(False)
        log.info("pixels without GT are trained toward %s", cfg.teacher)

    def loss_fn(m, b):
        if cfg.task == "refine":
            return refine_loss(m, b)
        if stereo:
            return stereo_loss(m, b, no_return_far=cfg.no_return_far)
        return mono_loss(m, b, no_return_far=cfg.no_return_far, rel_weight=cfg.rel_weight, teacher=teacher,
                         teacher_weight=cfg.teacher_weight)
    budget_s = cfg.minutes * 60.0
    t0 = time.perf_counter()
    last_ckpt = t0
    bar = tqdm(total=cfg.steps, initial=step, desc=f"train {cfg.task}", unit="step", dynamic_ncols=True)
    done = False
    while not done:
        for batch in loader:
            elapsed = elapsed0 + time.perf_counter() - t0
            if (cfg.steps is not None and step >= cfg.steps) or elapsed >= budget_s:
                done = True
                break
            for g in opt.param_groups:
                g["lr"] = lr_at(cfg, step, elapsed)
            if cfg.crop_aug > 0:
                crop_rng = np.random.default_rng([cfg.seed, step])
                if crop_rng.random() < cfg.crop_aug:
                    batch = crop_batch(batch, crop_rng)
            loss, parts = loss_fn(model, to_device(batch, device))
            if not torch.isfinite(loss):
                raise ValueError(f"training diverged at step {step}: loss {loss.item()}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}", **{k: f"{v:.3f}" for k, v in parts.items()})
            if time.perf_counter() - last_ckpt > cfg.checkpoint_minutes * 60.0:
                save_checkpoint(out, model, opt, cfg, step, epoch, elapsed0 + time.perf_counter() - t0)
                last_ckpt = time.perf_counter()
        else:
            epoch += 1
    bar.close()
    elapsed = elapsed0 + time.perf_counter() - t0
    ckpt = save_checkpoint(out, model, opt, cfg, step, epoch, elapsed)
    metrics = {}
    if len(val_set):
        metrics = validate(model, cfg.task, val_loader, train_set.baseline, train_set.item_camera.fx)
    size = cfg.size or train_set.camera.size
    item_cam = train_set.item_camera
    model.eval()
    example = [torch.zeros(1, c, 240, 320, device=device) for c in INPUT_CHANNELS[cfg.task]]
    card = {
        "model": model_name,
        "params": count_params(model),
        "gmac_320x240": count_macs(model, *example) / 1e9,
        "input_size": list(size),
        # the camera the network learned at its input size; a focal-normalised network (trained on
        # crops) is run on any camera resampled to this focal length (runtime.MonoRadarEstimator)
        "input_focal_px": [round(item_cam.fx, 6), round(item_cam.fy, 6)],  # no 80.00000000000001
        "focal_normalized": cfg.crop_aug > 0,
        "data": {"path": str(cfg.data), "train_frames": len(train_set), "val_frames": len(val_set),
                 "train_world_seeds": train_set.train_seeds, "val_world_seeds": train_set.val_seeds},
        **({"stereo_weights": cfg.stereo_weights or "packaged", "excluded_world_seeds": train_set.excluded_seeds}
           if cfg.task == "refine" else {}),
        "training": {"command": command, "steps": step, "epochs": epoch, "minutes": elapsed / 60.0,
                     "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()}},
        "metrics_val": metrics,
    }
    weights = save_weights(model, out / f"{model_name}.safetensors", card)
    return {"weights": str(weights), "checkpoint": str(ckpt), "steps": step, "epochs": epoch,
            "minutes": elapsed / 60.0, "metrics_val": metrics}


def save_checkpoint(out: Path, model, opt, cfg: TrainConfig, step: int, epoch: int, elapsed_s: float) -> Path:
    """Write the three checkpoint files; returns the JSON path."""
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
              str(out / f"{CKPT}.safetensors"))
    groups = save_optimizer(opt, out / f"{CKPT}_optim.safetensors")
    meta = {"step": step, "epoch": epoch, "elapsed_s": elapsed_s, "task": cfg.task,
            "architecture": {"class": type(model).__name__, "config": model.config},
            "param_groups": groups,
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()}}
    path = out / f"{CKPT}.json"
    path.write_text(json.dumps(meta, indent=2) + "\n")
    return path


def load_checkpoint(path: Path, model, opt) -> tuple[int, int, float]:
    """Restore model/optimizer from ``checkpoint.json`` (or its .safetensors); (step, epoch, elapsed_s)."""
    path = path.with_suffix(".json") if path.suffix == ".safetensors" else path
    if path.is_dir():
        path = path / f"{CKPT}.json"
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    meta = json.loads(path.read_text())
    if meta.get("architecture", {}).get("class") != type(model).__name__:
        raise ValueError(f"checkpoint {path} is for {meta.get('architecture')}, not {type(model).__name__}")
    model.load_state_dict(load_file(str(path.with_suffix(".safetensors"))))
    load_optimizer(opt, path.with_name(path.stem + "_optim.safetensors"), meta["param_groups"])
    return int(meta["step"]), int(meta["epoch"]), float(meta.get("elapsed_s", 0.0))
