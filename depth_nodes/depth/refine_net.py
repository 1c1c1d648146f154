"""Learned refinement of the stereo hybrid's disparity (``stereo_refine`` weights).

The hybrid (:class:`~depth_nodes.depth.runtime.HybridStereoEstimator`) takes SGBM's disparity
where SGBM matches and the network's elsewhere. Its remaining error has two parts a small
image-guided network can see:

* at depth edges, block matching carries the nearer surface's disparity a few pixels onto the
  farther one ("foreground fattening"): there the left image and the right image warped by
  that disparity do not agree, and the colour edge shows where the depth edge really is;
* on far surfaces (a disparity of 1-2 px) sub-pixel noise of 0.1 px is a 5-10 % depth error,
  and neighbours on the same surface average it down.

Input: left and right RGB (B, 3, H, W) float 0..255, the hybrid's disparity (B, 1, H, W) px and
its source (B, 2, H, W): channel 0 is 1 where the pixel is SGBM's with all its passes agreeing,
channel 1 where it is SGBM's otherwise (a pass chosen where they conflict); both 0 where it is
the network's. The network sees the left image, the right image warped by the disparity, their
difference and ``log(1 + disparity)``; full resolution throughout, dilated residual 3x3 convs
(receptive field about 37 px). Output: the refined disparity, ``relu(disparity + residual)``,
at the input resolution (a one-element tuple). Fully convolutional: any image size, any disparity range.

Pixels whose input disparity is below ``disparity.MIN_DISPARITY_PX`` (no depth: beyond the
range a disparity can give, or sky) pass through unchanged. Refined freely, a trial refiner
gave 0.5 % of the held-out pixels within 20 m a disparity there, at 3.2 abs_rel, and lost more
than it gained everywhere else (abs_rel within 20 m on ``data/val``, a throwaway script: 0.059 -> 0.066).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from depth_nodes.depth.disparity import MIN_DISPARITY_PX
from depth_nodes.depth.layers import ConvBNReLU, NormalizeRGB
from depth_nodes.depth.stereo_net import warp_right

#: Input channels: left (3), warped right (3), their mean absolute difference (1),
#: log(1 + disparity) (1), source (2).
CUES = 10


def source_channels(agreeing, other_sgbm) -> torch.Tensor:
    """(1, 2, H, W) float32 source input from two (H, W) boolean masks (see module docstring)."""
    a = torch.as_tensor(agreeing, dtype=torch.bool)
    b = torch.as_tensor(other_sgbm, dtype=torch.bool) & ~a
    return torch.stack([a, b]).float()[None]


class DisparityRefiner(nn.Module):
    """See module docstring. ``features``: channels; ``dilations``: one residual
    3x3 ConvBNReLU per entry, with that dilation."""

    def __init__(self, features: int = 16, dilations: tuple[int, ...] | list[int] = (1, 2, 4, 8, 1)):
        super().__init__()
        if features < 1 or not dilations or min(dilations) < 1:
            raise ValueError(f"features and dilations must be >= 1, got {features}, {list(dilations)}")
        self.config = {"features": int(features), "dilations": [int(d) for d in dilations]}
        self.norm = NormalizeRGB()
        self.inp = ConvBNReLU(CUES, features)
        self.body = nn.ModuleList([ConvBNReLU(features, features, dilation=int(d)) for d in dilations])
        self.out = nn.Conv2d(features, 1, 3, padding=1)

    def forward(self, left: torch.Tensor, right: torch.Tensor, disparity: torch.Tensor,
                source: torch.Tensor) -> tuple[torch.Tensor]:
        left, right = self.norm(left), self.norm(right)
        warped = warp_right(right, disparity)
        diff = (left - warped).abs().mean(dim=1, keepdim=True)
        x = self.inp(torch.cat([left, warped, diff, torch.log1p(disparity.clamp(min=0.0)), source], dim=1))
        for block in self.body:
            x = x + block(x)
        refined = F.relu(disparity + self.out(x))
        # a pixel the hybrid puts beyond the usable range (sky, or too far to measure) stays there
        return (torch.where(disparity >= MIN_DISPARITY_PX, refined, disparity),)  # a tuple, like the others
