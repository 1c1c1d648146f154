"""Lightweight StereoNet-class network for rectified pairs.

Input: left and right RGB (B, 3, H, W) float 0..255 of a rectified pair.
Output: left-image disparity (B, 1, H, W) in pixels at the input resolution
and confidence (B, 1, H, W) in [0, 1] = predicted probability that the
disparity error is below 1 px. Depth = fx * baseline / disparity (done by the
estimator with the camera).

Pipeline: shared feature extractor (1/2 then 1/4 resolution, both images in
one batch) -> group-wise correlation cost volume at 1/4 over
``max_disparity / 4`` candidates -> light 3x3x3 aggregation (:class:`VolumeConv`) (weights do not
depend on the number of candidates, so ``max_disparity`` can change after
training) -> soft-argmin -> edge-aware residual refinement at 1/2 with the
left image features -> bilinear upsampling to full resolution.

With ``local_radius`` R > 0 the refinement also sees how well the two images agree at 1/2
resolution around the coarse estimate: the right image's 1/2-resolution features are warped
by the coarse disparity plus each offset -R..R px (at the input resolution, so half-pixel
steps at 1/2) and correlated with the left ones (:func:`local_correlation`), a finer match
than the 1/4-resolution cost volume gives. R = 0 is the original network, and the packaged
weights' (a refinement-only fine-tune with R = 3 did not make the disparity more precise;
see models/stereo_training/README.md).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from depth_nodes.depth.layers import ConvBNReLU, NormalizeRGB, ResBlock, upsample_to

#: Cost volume resolution relative to the input.
COST_STRIDE = 4


def correlation_volume(fl: torch.Tensor, fr: torch.Tensor, candidates: int, groups: int,
                       channels_last: bool = False) -> torch.Tensor:
    """Group-wise correlation (B, D, G, H, W), or (B, D, H, W, G) with ``channels_last``: mean
    over each channel group of ``fl(x) * fr(x - d)`` for d = 0..D-1 (zero where x - d falls
    outside)."""
    b, c, h, w = fl.shape
    cdim, wdim = 1, 3
    if channels_last:
        fl, fr = fl.permute(0, 2, 3, 1), fr.permute(0, 2, 3, 1)  # (B, H, W, C) views
        cdim, wdim = 3, 2
    slices = []
    for d in range(candidates):
        prod = fl.narrow(wdim, d, w - d) * fr.narrow(wdim, 0, w - d)
        prod = prod.unflatten(cdim, (groups, c // groups)).mean(dim=cdim + 1)
        slices.append(F.pad(prod, (0, 0) * (prod.dim() - 1 - wdim) + (d, 0)) if d else prod)
    return torch.stack(slices, dim=1)


def warp_right(fr: torch.Tensor, disparity: torch.Tensor) -> torch.Tensor:
    """Right-image features (B, C, H, W) resampled at x - disparity (B, 1, H, W; px at this
    resolution), bilinear, zero outside the image: where the left pixel's match would be.

    Always sampled in float32: in float16 a position near x = 700 px is rounded to 0.5 px, and
    torch's half-precision CPU sampler returned NaN at some positions of the Middlebury pair.
    The result has ``fr``'s dtype; float32 inputs run exactly as before."""
    b, _, h, w = fr.shape
    xs = torch.arange(w, dtype=torch.float32, device=fr.device).view(1, 1, w) - disparity[:, 0].float()
    ys = torch.arange(h, dtype=torch.float32, device=fr.device).view(1, h, 1).expand(b, h, w)
    grid = torch.stack([xs * (2.0 / max(w - 1, 1)) - 1.0, ys * (2.0 / max(h - 1, 1)) - 1.0], dim=-1)
    out = F.grid_sample(fr.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out.to(fr.dtype)


def local_correlation(fl: torch.Tensor, fr: torch.Tensor, disparity: torch.Tensor, radius: int,
                      step: float = 1.0) -> torch.Tensor:
    """(B, 2R+1, H, W): channel-mean of ``fl * warp_right(fr, disparity + k * step)`` for k = -R..R."""
    return torch.cat([(fl * warp_right(fr, disparity + k * step)).mean(dim=1, keepdim=True)
                      for k in range(-radius, radius + 1)], dim=1)


class VolumeConv(nn.Module):
    """3x3x3 convolution over a cost volume (B, D, C, H, W), written with 2D convolutions so
    that it runs on fast 2D kernels on every runtime (same maths as Conv3d). Followed by
    BatchNorm + ReLU unless ``last``.

    The weights (``conv``: cout x 3 cin x 3 x 3) are those of a 2D convolution over the slices
    d-1, d, d+1 stacked along the channels. There are two ways to run it:

    - stacked outputs: one 2D convolution of every slice gives 3 cout channels, what the
      slice adds to outputs d+1, d and d-1, and those are added along D. The volume is never
      stacked (three times the input), and a single output channel (the last layer) becomes
      three, which oneDNN runs much faster. Used in the NCHW layout, where the three parts
      are contiguous planes (exported graphs: onnxruntime ran the stereo network about 15 %
      faster than with stacked inputs), and for layers with fewer outputs than inputs.
    - one convolution per offset: the slices d-1, d and d+1 each convolved with their part
      of the weights, and added. Used channels last otherwise: there the three parts of the
      stacked outputs are interleaved per pixel, and adding them took as long as the
      convolution; concatenating the three slices (stacked inputs) was 12-15 % slower too.

    ``channels_last``: the volume is (B, D, H, W, C) instead, which the 2D convolution reads
    as a channels-last batch, and whose output is the next volume, with no layout conversion.
    The torch runtime runs its convolutions channels last (oneDNN), where the first layout had
    each volume converted before and after its convolution. Exported graphs (traced from NCHW
    inputs) keep the first layout."""

    def __init__(self, cin: int, cout: int, last: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(3 * cin, cout, 3, padding=1, bias=last)
        self.bn = nn.Identity() if last else nn.BatchNorm2d(cout)
        self.act = nn.Identity() if last else nn.ReLU(inplace=True)

    def forward(self, v: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
        b, d = v.shape[:2]
        if channels_last and 3 * self.conv.out_channels >= self.conv.in_channels:
            out = self._per_offset(v)
        else:
            out = self._stacked_outputs(v, channels_last)
        cout = self.conv.out_channels  # (a -1 here made the exported graph test the size at run time)
        if channels_last:
            return self.act(self.bn(out)).permute(0, 2, 3, 1).reshape(b, d, *v.shape[2:4], cout)
        return self.act(self.bn(out)).reshape(b, d, cout, *v.shape[3:])

    def layer_macs(self, inputs, output: torch.Tensor) -> int:
        """MACs of one call (:func:`~depth_nodes.depth.flops.count_macs`), the same both ways."""
        return output.numel() * self.conv.in_channels * self.conv.kernel_size[0] * self.conv.kernel_size[1]

    def _per_offset(self, v: torch.Tensor) -> torch.Tensor:
        """The convolution before BatchNorm, channels last (B*D, cout, H, W), from three 2D
        convolutions: the slices d, d-1 and d+1, each with its part of the weights, added up."""
        b, d, h, w, cin = v.shape
        parts = self.conv.weight.unflatten(1, (3, cin)).unbind(1)  # for the slices d-1, d, d+1

        def conv(slices: torch.Tensor, k: int, bias=None) -> torch.Tensor:  # -> (B, D', H, W, cout)
            x = slices.reshape(-1, h, w, cin).permute(0, 3, 1, 2)  # a channels-last batch
            y = F.conv2d(x, parts[k], bias, padding=self.conv.padding)
            return y.permute(0, 2, 3, 1).reshape(b, slices.shape[1], h, w, -1)

        out = conv(v, 1, self.conv.bias)
        if d > 1:
            out[:, 1:] += conv(v[:, :-1], 0)
            out[:, :-1] += conv(v[:, 1:], 2)
        return out.reshape(b * d, h, w, -1).permute(0, 3, 1, 2)

    def _stacked_outputs(self, v: torch.Tensor, channels_last: bool) -> torch.Tensor:
        """The convolution before BatchNorm, (B*D, cout, H, W), from one 2D convolution per slice."""
        b, d = v.shape[:2]
        x = v.reshape(b * d, *v.shape[2:])
        if channels_last:  # (B*D, H, W, C) -> a channels-last (B*D, C, H, W) view
            x = x.permute(0, 3, 1, 2)
        w = self.conv.weight  # (cout, [slice d-1 | d | d+1] x cin, 3, 3) -> ([to d+1 | d | d-1] x cout, cin, 3, 3)
        cout, cin = w.shape[0], w.shape[1] // 3
        w = w.unflatten(1, (3, cin)).transpose(0, 1).reshape(3 * cout, cin, *w.shape[2:])
        bias = None if self.conv.bias is None else F.pad(self.conv.bias, (cout, cout))
        y = F.conv2d(x, w, bias, padding=self.conv.padding)
        # (B, D, H, W, 3, cout) or (B, D, 3, cout, H, W)
        y = (y.permute(0, 2, 3, 1).reshape(b, d, *v.shape[2:4], 3, cout) if channels_last
             else y.reshape(b, d, 3, cout, *v.shape[3:]))
        to_next, here, to_prev = y.unbind(4 if channels_last else 2)
        zero_hwc = (0, 0) * 3  # F.pad's (before, after) for the last three dimensions
        out = (here + F.pad(to_next.narrow(1, 0, d - 1), zero_hwc + (1, 0))
               + F.pad(to_prev.narrow(1, 1, d - 1), zero_hwc + (0, 1)))
        out = out.reshape(b * d, *out.shape[2:])
        return out.permute(0, 3, 1, 2) if channels_last else out


class StereoNet(nn.Module):
    """See module docstring. ``max_disparity`` (px at input resolution) is a
    multiple of 4; ``features``: channels at 1/4; ``groups``: correlation
    groups; ``agg``: 3D aggregation channels; ``refine``: refinement channels;
    ``local_radius``: offsets (px at the input resolution) either side of the coarse disparity
    that the refinement correlates at 1/2 resolution (0: none)."""

    def __init__(self, max_disparity: int = 64, features: int = 32, groups: int = 4, agg: int = 8,
                 refine: int = 24, local_radius: int = 0):
        super().__init__()
        if features % groups:
            raise ValueError(f"features ({features}) must be divisible by groups ({groups})")
        if local_radius < 0:
            raise ValueError(f"local_radius must be >= 0, got {local_radius}")
        self.config = {"max_disparity": int(max_disparity), "features": features, "groups": groups,
                       "agg": agg, "refine": refine}
        if local_radius:  # older cards have no such key: they are the local_radius = 0 network
            self.config["local_radius"] = int(local_radius)
        self.local_radius = int(local_radius)
        self.set_max_disparity(max_disparity)
        self.groups = groups
        self.norm = NormalizeRGB()
        self.stem = ConvBNReLU(3, 16, stride=2)
        self.quarter = nn.Sequential(ConvBNReLU(16, features, stride=2), ResBlock(features, features),
                                     nn.Conv2d(features, features, 3, padding=1))
        self.aggregate = nn.Sequential(VolumeConv(groups, agg), VolumeConv(agg, agg), VolumeConv(agg, agg),
                                       VolumeConv(agg, 1, last=True))
        cues = 16 + 2 + (2 * local_radius + 1 if local_radius else 0)  # left features, disparity, peak, matches
        self.refine = nn.Sequential(ConvBNReLU(cues, refine), ConvBNReLU(refine, refine, dilation=2),
                                    ConvBNReLU(refine, refine, dilation=4), ConvBNReLU(refine, refine),
                                    nn.Conv2d(refine, 2, 3, padding=1))

    def set_max_disparity(self, max_disparity: int) -> None:
        """Change the disparity search range (px at input resolution, multiple of 4)."""
        if max_disparity < COST_STRIDE or max_disparity % COST_STRIDE:
            raise ValueError(f"max_disparity must be a positive multiple of {COST_STRIDE}, got {max_disparity}")
        self.max_disparity = int(max_disparity)
        self.config["max_disparity"] = int(max_disparity)

    def coarse_and_refined(self, left: torch.Tensor, right: torch.Tensor):
        """Training view: (coarse disparity at full res, refined disparity, confidence logit)."""
        b = left.shape[0]
        half = self.stem(self.norm(torch.cat([left, right], dim=0)))
        quarter = self.quarter(half)
        fl, fr = quarter[:b], quarter[b:]
        candidates = self.max_disparity // COST_STRIDE
        # the volume follows the features' layout: channels last as the torch runtime runs them
        nhwc = not quarter.is_contiguous() and quarter.is_contiguous(memory_format=torch.channels_last)
        cost = correlation_volume(fl, fr, candidates, self.groups, channels_last=nhwc)
        for layer in self.aggregate:
            cost = layer(cost, channels_last=nhwc)
        cost = cost.squeeze(-1 if nhwc else 2)
        prob = torch.softmax(cost, dim=1)
        levels = torch.arange(candidates, dtype=prob.dtype, device=prob.device).view(1, -1, 1, 1)
        disp_q = (prob * levels).sum(dim=1, keepdim=True) * COST_STRIDE
        peak = prob.max(dim=1, keepdim=True).values
        half_l = half[:b]
        disp_h = upsample_to(disp_q, half_l)
        cues = [half_l, disp_h / self.max_disparity, upsample_to(peak, half_l)]
        if self.local_radius:
            cues.append(local_correlation(half_l, half[b:], disp_h * 0.5, self.local_radius, step=0.5))
        out = self.refine(torch.cat(cues, dim=1))
        refined = F.relu(disp_h + out[:, :1] * (0.1 * self.max_disparity))
        return upsample_to(disp_q, left), upsample_to(refined, left), upsample_to(out[:, 1:], left)

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, disp, conf_logit = self.coarse_and_refined(left, right)
        return disp, torch.sigmoid(conf_logit)
