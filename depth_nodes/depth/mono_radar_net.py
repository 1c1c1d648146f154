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

``skip_kernel=1`` (with ``coarse_decoder``) mixes the skip features with a 1x1 convolution
instead of a 3x3 one (:class:`SkipDecoderLevel`): the spatial context then comes from the
coarser level's 3x3 kernel and the encoder, and the skip features add per-pixel detail.
A list gives each level's kernel, coarsest (1/16) first. ``head_kernel=1`` makes the head a
1x1 convolution. ``skip_kernel=1`` and ``head_kernel=1`` together: 0.60 GMAC at 320x240.
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


def skip_kernels(value) -> tuple[int, int, int, int]:
    """``skip_kernel`` (one kernel size, or one per decoder level, coarsest first) as four sizes;
    ValueError unless each is 1 or 3."""
    kernels = (value,) * 4 if isinstance(value, int) else tuple(value)
    if len(kernels) != 4 or any(isinstance(k, bool) or k not in (1, 3) for k in kernels):
        raise ValueError(f"skip_kernel must be 1, 3 or four of them (one per decoder level), got {value!r}")
    return tuple(int(k) for k in kernels)


def decoder_kernels(coarse_decoder: bool, skip_kernel, head_kernel: int) -> tuple[int, int, int, int]:
    """The four skip kernel sizes, after checking the decoder options together (ValueError)."""
    kernels = skip_kernels(skip_kernel)
    if head_kernel not in (1, 3):
        raise ValueError(f"head_kernel must be 1 or 3, got {head_kernel}")
    if 1 in kernels and not coarse_decoder:
        raise ValueError("skip_kernel 1 needs coarse_decoder=True")
    return kernels


class SkipDecoderLevel(nn.Module):
    """A coarse decoder level whose skip features go through a 1x1 convolution:
    ``relu(bn(upsample(conv3x3(y)) + conv1x1(skip)))``, ``forward(y, skip)``."""

    def __init__(self, cin: int, cskip: int, cout: int):
        super().__init__()
        self.cin = cin
        self.coarse = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.skip = nn.Conv2d(cskip, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.ReLU(inplace=True)

    def forward(self, y: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(upsample_to(self.coarse(y), skip) + self.skip(skip)))

    @torch.no_grad()
    def fold_batchnorm_(self) -> None:
        """Fold the BatchNorm (eval statistics) into both convolutions: same outputs."""
        if isinstance(self.bn, nn.Identity):
            return
        scale = self.bn.weight / torch.sqrt(self.bn.running_var + self.bn.eps)
        shift = self.bn.bias - self.bn.running_mean * scale
        self.coarse.weight.mul_(scale.view(-1, 1, 1, 1))
        self.skip.weight.mul_(scale.view(-1, 1, 1, 1))
        self.coarse.bias = nn.Parameter(shift.clone())
        self.bn = nn.Identity()

    @staticmethod
    def state_from_3x3(state: dict, prefix: str, cin: int) -> dict:
        """This level's tensors from a 3x3 coarse level's (``prefix`` + ``0.weight``, ``1.*``):
        the coarse part of the kernel as it is, the skip part summed over its taps (the same
        response to features that are constant over the kernel)."""
        out = {}
        for name, value in state.items():
            if not name.startswith(prefix):
                continue
            rest = name[len(prefix):]
            if rest == "0.weight":
                out[prefix + "coarse.weight"] = value[:, :cin].clone()
                out[prefix + "skip.weight"] = value[:, cin:].sum(dim=(2, 3), keepdim=True)
            elif rest.startswith("1."):
                out[prefix + "bn." + rest[2:]] = value
            else:
                out[name] = value
        return out


class MonoRadarNet(nn.Module):
    """See module docstring. ``widths``: encoder channels at 1/2, 1/4, ..., 1/32;
    ``decoder``: channels at 1/16, 1/8, 1/4, 1/2; depth is bounded to
    [``min_depth``, ``max_depth``] metres by a sigmoid on log-depth; ``skip_kernel`` (3 or 1,
    or one of them per decoder level) and ``head_kernel`` (3 or 1): see the module docstring."""

    def __init__(self, widths=(16, 32, 64, 96, 128), decoder=(96, 64, 32, 16),
                 min_depth: float = 0.2, max_depth: float = 80.0, coarse_decoder: bool = False,
                 skip_kernel=3, head_kernel: int = 3):
        super().__init__()
        if len(widths) != 5 or len(decoder) != 4:
            raise ValueError(f"widths needs 5 and decoder 4 entries, got {widths}, {decoder}")
        if not 0 < min_depth < max_depth:
            raise ValueError(f"need 0 < min_depth < max_depth, got {min_depth}, {max_depth}")
        kernels = decoder_kernels(coarse_decoder, skip_kernel, head_kernel)
        self.config = {"widths": list(widths), "decoder": list(decoder),
                       "min_depth": float(min_depth), "max_depth": float(max_depth)}
        if coarse_decoder:  # older cards have no such key: they are the fine decoder
            self.config["coarse_decoder"] = True
        if kernels != (3, 3, 3, 3):  # nor these: older cards are 3x3
            self.config["skip_kernel"] = kernels[0] if len(set(kernels)) == 1 else list(kernels)
        if head_kernel != 3:
            self.config["head_kernel"] = int(head_kernel)
        self.coarse_decoder = bool(coarse_decoder)
        self.log_min, self.log_range = math.log(min_depth), math.log(max_depth / min_depth)
        self.norm = NormalizeRGB()
        w = widths
        self.stem = nn.Sequential(ConvBNReLU(5, w[0], stride=2), ConvBNReLU(w[0], w[0]))
        self.stages = nn.ModuleList(
            nn.Sequential(ResBlock(w[i - 1], w[i], stride=2), ResBlock(w[i], w[i])) for i in range(1, 5))
        dec_in = [w[4]] + list(decoder[:-1])
        skips = [w[3], w[2], w[1], w[0]]
        self.decoder = nn.ModuleList(
            SkipDecoderLevel(dec_in[i], skips[i], decoder[i]) if kernels[i] == 1
            else DecoderLevel(dec_in[i], skips[i], decoder[i], coarse_decoder) for i in range(4))
        self.head = nn.Conv2d(decoder[-1], 2, head_kernel, padding=head_kernel // 2)

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
            w = level.coarse.weight if isinstance(level, SkipDecoderLevel) else level[0].weight[:, :level.cin]
            total = w.sum(dim=(2, 3))
            w.mul_(0.5)
            w[:, :, w.shape[2] // 2, w.shape[3] // 2] += 0.5 * total

    def adapt_source_state(self, state: dict) -> dict:
        """Weights of a 3x3 coarse-decoder network (``state``) in this network's shapes, for
        :func:`~depth_nodes.depth.model_io.init_from_weights`: a 1x1 skip convolution or head
        starts as the 3x3 kernel summed over its taps (see :meth:`SkipDecoderLevel.state_from_3x3`).
        Tensors already in this network's shapes pass unchanged."""
        state = dict(state)
        for i, level in enumerate(self.decoder):
            prefix = f"decoder.{i}."
            if isinstance(level, SkipDecoderLevel) and prefix + "0.weight" in state:
                converted = SkipDecoderLevel.state_from_3x3(state, prefix, level.cin)
                state = {k: v for k, v in state.items() if not k.startswith(prefix)}
                state.update(converted)
        w = state.get("head.weight")
        if w is not None and w.shape[2:] != self.head.weight.shape[2:] and self.head.kernel_size == (1, 1):
            state["head.weight"] = w.sum(dim=(2, 3), keepdim=True)
        return state

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
