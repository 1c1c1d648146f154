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

Each decoder level convolves the coarser level's output, upsampled 2x, together with the
encoder's skip features (one 3x3 conv over both). With ``coarse_decoder`` the coarser part
of that kernel runs at the coarser level's own resolution and its result is upsampled (a
quarter of those MACs), then added to the skip features' convolution: the same parameters,
0.21 GMAC fewer at 320x240 (0.74 instead of 0.95).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from depth_nodes.depth.layers import ConvBNReLU, NormalizeRGB, ResBlock, upsample_to


class DecoderLevel(ConvBNReLU):
    """One U-Net decoder level: 3x3 conv -> BatchNorm -> ReLU over the coarser level's output
    (``cin`` channels, upsampled 2x) and the skip features (``cskip``), ``forward(y, skip)``.
    The kernel's first ``cin`` input channels see ``y``. With ``coarse`` that part runs at
    ``y``'s resolution and its result is upsampled (see the module docstring)."""

    def __init__(self, cin: int, cskip: int, cout: int, coarse: bool = False):
        super().__init__(cin + cskip, cout)
        self.cin, self.coarse = cin, bool(coarse)

    def forward(self, y: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if not self.coarse:
            return super().forward(torch.cat([upsample_to(y, skip), skip], dim=1))
        conv, k = self[0], y.shape[1]
        coarse = F.conv2d(y, conv.weight[:, :k], conv.bias, padding=conv.padding)
        out = upsample_to(coarse, skip) + F.conv2d(skip, conv.weight[:, k:], padding=conv.padding)
        for layer in list(self)[1:]:  # BatchNorm (Identity once folded), ReLU
            out = layer(out)
        return out

    def layer_macs(self, inputs, output: torch.Tensor) -> int:
        """MACs of one call (:func:`~depth_nodes.depth.flops.count_macs`)."""
        y, skip = inputs
        conv = self[0]
        taps = conv.kernel_size[0] * conv.kernel_size[1] * conv.out_channels
        coarse_pixels = (y[0, 0].numel() if self.coarse else skip[0, 0].numel()) * y.shape[0]
        return taps * (coarse_pixels * y.shape[1] + output.numel() // conv.out_channels * skip.shape[1])


class MonoRadarNet(nn.Module):
    """See module docstring. ``widths``: encoder channels at 1/2, 1/4, ..., 1/32;
    ``decoder``: channels at 1/16, 1/8, 1/4, 1/2; depth is bounded to
    [``min_depth``, ``max_depth``] metres by a sigmoid on log-depth."""

    def __init__(self, widths=(16, 32, 64, 96, 128), decoder=(96, 64, 32, 16),
                 min_depth: float = 0.2, max_depth: float = 80.0, coarse_decoder: bool = False):
        super().__init__()
        if len(widths) != 5 or len(decoder) != 4:
            raise ValueError(f"widths needs 5 and decoder 4 entries, got {widths}, {decoder}")
        if not 0 < min_depth < max_depth:
            raise ValueError(f"need 0 < min_depth < max_depth, got {min_depth}, {max_depth}")
        self.config = {"widths": list(widths), "decoder": list(decoder),
                       "min_depth": float(min_depth), "max_depth": float(max_depth)}
        if coarse_decoder:  # older cards have no such key: they are the fine decoder
            self.config["coarse_decoder"] = True
        self.coarse_decoder = bool(coarse_decoder)
        self.log_min, self.log_range = math.log(min_depth), math.log(max_depth / min_depth)
        self.norm = NormalizeRGB()
        w = widths
        self.stem = nn.Sequential(ConvBNReLU(5, w[0], stride=2), ConvBNReLU(w[0], w[0]))
        self.stages = nn.ModuleList(
            nn.Sequential(ResBlock(w[i - 1], w[i], stride=2), ResBlock(w[i], w[i])) for i in range(1, 5))
        dec_in = [w[4]] + list(decoder[:-1])
        skips = [w[3], w[2], w[1], w[0]]
        self.decoder = nn.ModuleList(DecoderLevel(dec_in[i], skips[i], decoder[i], coarse_decoder) for i in range(4))
        self.head = nn.Conv2d(decoder[-1], 2, 3, padding=1)

    @torch.no_grad()
    def adopt_fine_decoder_(self) -> None:
        """After loading a fine decoder's weights into this coarse one: rescale the coarse part
        of each level's kernel (W, taps at +-1 px of the coarse map) so that, run at the coarse
        resolution, it matches the fine kernel to first order. The fine kernel's taps sit half a
        coarse pixel apart, so its sum and first moments are kept by 0.5 W plus 0.5 sum(W) on the
        centre tap. A starting point for fine-tuning, not the same function."""
        if not self.coarse_decoder:
            raise ValueError("adopt_fine_decoder_ is for a network built with coarse_decoder=True")
        for level in self.decoder:
            w = level[0].weight[:, :level.cin]
            total = w.sum(dim=(2, 3))
            w.mul_(0.5)
            w[:, :, w.shape[2] // 2, w.shape[3] // 2] += 0.5 * total

    def logits(self, image: torch.Tensor, radar: torch.Tensor) -> torch.Tensor:
        """(B, 2, H, W) raw head output at full resolution: [log-depth logit, confidence logit]."""
        x = torch.cat([self.norm(image), radar], dim=1)
        feats = [self.stem(x)]
        for stage in self.stages:
            feats.append(stage(feats[-1]))
        y = feats[-1]
        for level, skip in zip(self.decoder, reversed(feats[:-1])):
            y = level(y, skip)
        # NCHW before upsampling: bilinear resizing of two channels-last channels (the torch
        # runtime's layout) took several times as long
        return upsample_to(self.head(y).contiguous(), image)

    def log_depth(self, logits: torch.Tensor) -> torch.Tensor:
        """Bounded natural-log depth (log metres) from the first logit channel."""
        return self.log_min + self.log_range * torch.sigmoid(logits[:, :1])

    def forward(self, image: torch.Tensor, radar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.logits(image, radar)
        return torch.exp(self.log_depth(logits)), torch.sigmoid(logits[:, 1:])
