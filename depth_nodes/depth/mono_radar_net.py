"""Early-fusion monocular + radar depth network.

Input: RGB (B, 3, H, W) float 0..255 and radar (B, 2, H, W) = [inverse depth
1/m, mask] from :func:`~depth_nodes.depth.radar_encoding.encode_radar` (all
zeros = no radar, which the net is trained for with radar dropout).
Output: metric depth (B, 1, H, W) metres along optical z and confidence
(B, 1, H, W) in [0, 1] = predicted probability that the depth is within a
factor 1.25 of the truth (a delta1 inlier).

Architecture: ResNet-like encoder (stride-2 stem, stages at 1/4..1/32), U-Net
decoder with one 3x3 conv per level up to 1/2 resolution, a 2-channel head
(bounded log-depth, confidence logit) bilinearly upsampled to full resolution.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from depth_nodes.depth.layers import ConvBNReLU, NormalizeRGB, ResBlock, upsample_to


class MonoRadarNet(nn.Module):
    """See module docstring. ``widths``: encoder channels at 1/2, 1/4, ..., 1/32;
    ``decoder``: channels at 1/16, 1/8, 1/4, 1/2; depth is bounded to
    [``min_depth``, ``max_depth``] metres by a sigmoid on log-depth."""

    def __init__(self, widths=(16, 32, 64, 96, 128), decoder=(96, 64, 32, 16),
                 min_depth: float = 0.2, max_depth: float = 80.0):
        super().__init__()
        if len(widths) != 5 or len(decoder) != 4:
            raise ValueError(f"widths needs 5 and decoder 4 entries, got {widths}, {decoder}")
        if not 0 < min_depth < max_depth:
            raise ValueError(f"need 0 < min_depth < max_depth, got {min_depth}, {max_depth}")
        self.config = {"widths": list(widths), "decoder": list(decoder),
                       "min_depth": float(min_depth), "max_depth": float(max_depth)}
        self.log_min, self.log_range = math.log(min_depth), math.log(max_depth / min_depth)
        self.norm = NormalizeRGB()
        w = widths
        self.stem = nn.Sequential(ConvBNReLU(5, w[0], stride=2), ConvBNReLU(w[0], w[0]))
        self.stages = nn.ModuleList(
            nn.Sequential(ResBlock(w[i - 1], w[i], stride=2), ResBlock(w[i], w[i])) for i in range(1, 5))
        dec_in = [w[4]] + list(decoder[:-1])
        skips = [w[3], w[2], w[1], w[0]]
        self.decoder = nn.ModuleList(ConvBNReLU(dec_in[i] + skips[i], decoder[i]) for i in range(4))
        self.head = nn.Conv2d(decoder[-1], 2, 3, padding=1)

    def logits(self, image: torch.Tensor, radar: torch.Tensor) -> torch.Tensor:
        """(B, 2, H, W) raw head output at full resolution: [log-depth logit, confidence logit]."""
        x = torch.cat([self.norm(image), radar], dim=1)
        feats = [self.stem(x)]
        for stage in self.stages:
            feats.append(stage(feats[-1]))
        y = feats[-1]
        for conv, skip in zip(self.decoder, reversed(feats[:-1])):
            y = conv(torch.cat([upsample_to(y, skip), skip], dim=1))
        # NCHW before upsampling: bilinear resizing of two channels-last channels (the torch
        # runtime's layout) took several times as long
        return upsample_to(self.head(y).contiguous(), image)

    def log_depth(self, logits: torch.Tensor) -> torch.Tensor:
        """Bounded natural-log depth (log metres) from the first logit channel."""
        return self.log_min + self.log_range * torch.sigmoid(logits[:, :1])

    def forward(self, image: torch.Tensor, radar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.logits(image, radar)
        return torch.exp(self.log_depth(logits)), torch.sigmoid(logits[:, 1:])
