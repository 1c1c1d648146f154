"""Building blocks shared by the depth networks (plain 3x3 convs, BatchNorm, ReLU).

Every conv is followed by a BatchNorm that export/inference can fold into it;
no depthwise convolutions (they are slow on GPUs/TensorRT for these sizes).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Per-channel RGB mean/std of 0..255 images used to normalise network inputs.
RGB_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
RGB_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


class ConvBNReLU(nn.Sequential):
    """3x3 (or k x k) conv -> BatchNorm -> ReLU, 'same' padding for stride 1."""

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1, k: int = 3, relu: bool = True):
        layers = [nn.Conv2d(cin, cout, k, stride, padding=dilation * (k // 2), dilation=dilation, bias=False),
                  nn.BatchNorm2d(cout)]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class ResBlock(nn.Module):
    """ResNet basic block (two 3x3 convs); 1x1 projection when shape changes."""

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.conv1 = ConvBNReLU(cin, cout, stride, dilation)
        self.conv2 = ConvBNReLU(cout, cout, 1, dilation, relu=False)
        self.proj = None if (cin == cout and stride == 1) else ConvBNReLU(cin, cout, stride, k=1, relu=False)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.proj is None else self.proj(x)
        return self.act(self.conv2(self.conv1(x)) + skip)


class NormalizeRGB(nn.Module):
    """(B, 3, H, W) float 0..255 RGB -> zero-mean unit-variance channels."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(RGB_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(RGB_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def upsample_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Bilinear resize of ``x`` to ``ref``'s spatial size."""
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)
