"""Multiply-accumulate (MAC) and parameter counting with forward hooks.

Counts conv (1D/2D/3D, transposed) and linear layers only, which dominate
these networks; BatchNorm (foldable), activations, interpolation and the
correlation volume's element-wise products are not counted. A module with a
``layer_macs(inputs, output)`` method (one that runs its convolution through
``torch.nn.functional``) is counted by that method, and its submodules are not.
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

    def own_hook(module, inp, out):
        nonlocal total
        total += int(module.layer_macs(inp, out))

    counted_whole = [m for m in model.modules() if hasattr(m, "layer_macs")]
    inside = {id(sub) for m in counted_whole for sub in m.modules() if sub is not m}
    handles = [m.register_forward_hook(own_hook) for m in counted_whole if id(m) not in inside]
    handles += [m.register_forward_hook(hook) for m in model.modules()
                if isinstance(m, (*_CONV, nn.Linear)) and id(m) not in inside]
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
    """Number of parameters, frozen ones included (a network trained with some parts kept as
    they were has the same size)."""
    return sum(p.numel() for p in model.parameters())
