"""Multiply-accumulate (MAC) and parameter counting with forward hooks.

Counts conv (1D/2D/3D, transposed) and linear layers only, which dominate
these networks; BatchNorm (foldable), activations, interpolation and the
correlation volume's element-wise products are not counted.
"""
from __future__ import annotations

import math

import torch
from torch import nn

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def _layer_macs(module: nn.Module, inputs, output) -> int:
    if isinstance(module, _CONV):
        per_out = (module.in_channels // module.groups) * math.prod(module.kernel_size)
        if isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
            x = inputs[0]  # each input element scatters into out_channels/groups * kernel outputs
            return int(x.numel() * (module.out_channels // module.groups) * math.prod(module.kernel_size))
        return int(output.numel() * per_out)
    if isinstance(module, nn.Linear):
        return int(output.numel() * module.in_features)
    return 0


def count_macs(model: nn.Module, *inputs: torch.Tensor) -> int:
    """MACs of one forward pass divided by the batch size (``inputs[0].shape[0]``).

    Layers that run on a larger internal batch (e.g. both stereo images at
    once) are counted in full.
    """
    total = 0

    def hook(module, inp, out):
        nonlocal total
        total += _layer_macs(module, inp, out)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (*_CONV, nn.Linear))]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(*inputs)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return total // max(1, int(inputs[0].shape[0]))


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
