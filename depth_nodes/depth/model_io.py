"""Network weights on disk: safetensors + a JSON model card, pickle-free.

A model named ``NAME`` is stored as ``NAME.safetensors`` (state dict) and
``NAME.json`` (model card: ``architecture`` {class, config}, params, GMAC,
data, training command, metrics ...). Packaged weights live in
``depth_nodes/depth/weights/``. Loading never unpickles anything.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from depth_nodes.depth.mono_radar_net import MonoRadarNet
from depth_nodes.depth.refine_net import DisparityRefiner
from depth_nodes.depth.stereo_net import StereoNet

#: Directory of the packaged weights.
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
#: Architecture class name -> class (what a model card may name).
ARCHITECTURES: dict[str, type[nn.Module]] = {"MonoRadarNet": MonoRadarNet, "StereoNet": StereoNet,
                                             "DisparityRefiner": DisparityRefiner}
#: Estimation mode -> default weights file stem.
MODEL_FOR_MODE = {"mono": "mono_radar", "mono-radar": "mono_radar", "stereo": "stereo", "stereo-hybrid": "stereo"}
#: Default architecture for each weights stem (random-init benchmarks).
ARCH_FOR_MODEL = {"mono_radar": "MonoRadarNet", "stereo": "StereoNet", "stereo_refine": "DisparityRefiner"}


class WeightsNotFoundError(FileNotFoundError):
    """Trained weights (or their model card) are missing."""


def card_path(weights: Path) -> Path:
    """The model card beside a ``.safetensors`` file."""
    return Path(weights).with_suffix(".json")


def default_weights(model: str) -> Path:
    """Packaged weights path for ``model`` (``mono_radar``, ``stereo`` or ``stereo_refine``)."""
    if model not in ARCH_FOR_MODEL:
        raise ValueError(f"model must be one of {sorted(ARCH_FOR_MODEL)}, got {model!r}")
    return WEIGHTS_DIR / f"{model}.safetensors"


def build_model(arch: str, config: dict | None = None) -> nn.Module:
    """Instantiate architecture ``arch`` with ``config`` keyword arguments."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {sorted(ARCHITECTURES)}, got {arch!r}")
    return ARCHITECTURES[arch](**(config or {}))


def model_config(model: nn.Module) -> dict:
    """``{"class", "config"}`` describing how to rebuild ``model``."""
    return {"class": type(model).__name__, "config": dict(model.config)}


def save_weights(model: nn.Module, path, card: dict | None = None) -> Path:
    """Write ``model``'s state dict to ``path`` (.safetensors) and its card beside it."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"weights path must end in .safetensors, got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={"architecture": type(model).__name__})
    full_card = {"architecture": model_config(model), **(card or {})}
    card_path(path).write_text(json.dumps(full_card, indent=2, sort_keys=False) + "\n")
    return path


def read_card(path) -> dict:
    """Model card of weights ``path``; raises WeightsNotFoundError if absent."""
    cp = card_path(Path(path))
    if not cp.is_file():
        raise WeightsNotFoundError(f"model card {cp} not found (expected beside the weights)")
    card = json.loads(cp.read_text())
    arch = card.get("architecture")
    if not isinstance(arch, dict) or "class" not in arch:
        raise ValueError(f"model card {cp} lacks architecture.class")
    return card


def card_config(path) -> dict:
    """The architecture config on the card beside weights ``path`` ({} where there is no card)."""
    try:
        return dict(read_card(path)["architecture"].get("config", {}))
    except WeightsNotFoundError:
        return {}


def load_weights(path, **config_overrides) -> tuple[nn.Module, dict]:
    """Rebuild the model named by the card and load its safetensors state (eval mode).

    ``config_overrides`` replace architecture config entries that do not change
    the weights (e.g. ``max_disparity`` of the stereo net).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(
            f"trained weights {path} not found; train them with `depth-nodes train` and copy the "
            f".safetensors and .json into {WEIGHTS_DIR}")
    card = read_card(path)
    config = {**card["architecture"].get("config", {}), **config_overrides}
    model = build_model(card["architecture"]["class"], config)
    state = load_file(str(path), device="cpu")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"weights {path} do not match {card['architecture']['class']}: "
                         f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.eval(), card


def init_from_weights(model: nn.Module, path) -> dict:
    """Start ``model`` from the safetensors weights at ``path`` of a narrower variant of it.

    A model with an ``adapt_source_state(state)`` method first converts the source's tensors
    to its own shapes (e.g. a 3x3 kernel that is 1x1 here). Tensors of equal shape are copied.
    A tensor whose source has fewer input channels (dim 1; e.g. a first layer that now also
    takes extra cues appended after the old ones) gets the source in its leading channels and
    zeros in the new ones, so the model starts out computing exactly what the source did. Any other mismatch, or a tensor the source lacks, is an error.
    Returns counts ``{"copied", "widened"}``."""
    source = load_file(str(path), device="cpu")
    if hasattr(model, "adapt_source_state"):
        source = model.adapt_source_state(source)
    target = model.state_dict()
    missing = sorted(set(target) - set(source))
    unexpected = sorted(set(source) - set(target))
    if missing or unexpected:
        raise ValueError(f"weights {path} do not fit {type(model).__name__}: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    counts = {"copied": 0, "widened": 0}
    with torch.no_grad():
        for name, dst in target.items():
            src = source[name]
            if src.shape == dst.shape:
                dst.copy_(src)
                counts["copied"] += 1
            elif (src.dim() == dst.dim() >= 2 and src.shape[0] == dst.shape[0] and src.shape[2:] == dst.shape[2:]
                  and src.shape[1] < dst.shape[1]):
                dst.zero_()
                dst[:, : src.shape[1]].copy_(src)
                counts["widened"] += 1
            else:
                raise ValueError(f"weights {path}: {name} has shape {tuple(src.shape)}, the model needs "
                                 f"{tuple(dst.shape)} (only extra input channels can be added)")
    return counts


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every Conv2d -> BatchNorm2d pair (as built by :mod:`layers`) into the conv, in place.

    Eval-mode maths is unchanged; the BatchNorm is replaced by Identity. A module with a
    ``fold_batchnorm_()`` method (a BatchNorm after the sum of two convolutions) folds its own.
    """
    for module in list(model.modules()):
        if hasattr(module, "fold_batchnorm_"):
            module.fold_batchnorm_()
    for parent in model.modules():
        names = list(parent._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = parent._modules[a], parent._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                fused = torch.nn.utils.fusion.fuse_conv_bn_eval(conv.eval(), bn.eval())
                parent._modules[a], parent._modules[b] = fused, nn.Identity()
    return model
