"""OpenCV semi-global block matching behind the DepthEstimator interface.

Classical baseline and fallback for rectified stereo. Parameters scale with
image width unless given: the disparity search range is ``num_disparities``
(multiple of 16, default ~width/8 rounded up) and the block size grows from 5
px at <= 400 px width. Disparities OpenCV marks invalid (below
``minDisparity``, failed uniqueness / left-right / speckle checks) become NaN
depth. Confidence of a valid pixel is ``1 - SUBPIXEL_SIGMA_PX / disparity``
clipped to [0, 1]: the relative depth error a 0.5 px matching error causes
is larger for small disparities (far points); invalid pixels get 0.

Left band: OpenCV leaves the first ``num_disparities`` columns unmatched (its search there
would run off the right image), a fifth of the image at the default range. Both images are
padded on the left by that many repeated edge columns and the result cropped, so a pixel is
matched wherever its true match lies inside the right image (x >= disparity); candidates that
fall in the padding meet flat columns and rarely win (held-out renders: density within 20 m
0.81 -> 0.96).

Passes: one SGBM pass has two systematic errors that several passes with different
conditions average out. (1) Its sub-pixel fit pulls disparities toward whole pixels ("pixel
locking"; on the project's held-out renders its median error is 0.07-0.10 px at whole-pixel
disparities and 0.25 px half-way between). (2) The 3-way mode aggregates costs only along
paths that come from above and from the left, and its smoothness penalty makes a path lag
behind a disparity that changes along it: on the ground, whose disparity grows down the image,
upright passes read too small there and too large above the horizon (held-out renders:
median signed error -0.13 px in the bottom rows, +0.11 px in the top rows). With ``passes`` N >
1 pass k resamples the right image by k/N px and shifts its disparity back, and every odd pass
runs on the vertically flipped pair (its paths come from below). By default
(``require_agreement``) a pixel is valid only where every pass is valid and within 1 px of the
first: the flipped pass errs independently, so this rejects most gross mismatches (held-out
renders: density 0.83 -> 0.81). N passes cost N matchings.

Near pass (``near_pass``, default on): a surface nearer than the search range reaches has no
match in it, yet SGBM can find an agreeing wrong one there, far too far (a textured plane at
80 px with a 64 px search: a quarter of it matched, all at about 26 px, the rest invalid). The
same passes on the pair at half size reach twice the disparity; where they find a disparity
beyond ``NEAR_RANGE_FRACTION`` of the range that the full-size result lacks or misses by more
than ``NEAR_MARGIN_PX``, it is taken. About a third more matching time.
"""
from __future__ import annotations

import cv2
import numpy as np

from depth_nodes.depth.disparity import disparity_to_depth
from depth_nodes.depth.interface import DepthEstimator, DepthInput, StageTimer

#: Assumed matching error (px) used for the confidence of a valid disparity.
SUBPIXEL_SIGMA_PX = 0.5
#: Default number of matching passes (phase-shifted, every other one upside down; see the
#: module docstring).
DEFAULT_PASSES = 2
#: A later pass is averaged in where it is within this many px of the first pass.
PASS_AGREEMENT_PX = 1.0
#: Near pass (SGBM's and the stereo network's): its disparity is used beyond this fraction of
#: the full-size search range where the full-size result is missing or off by more than
#: NEAR_MARGIN_PX px (the network's: below the near pass's by more than that).
NEAR_RANGE_FRACTION, NEAR_MARGIN_PX = 0.75, 2.0
#: SGM smoothness penalties per block pixel and channel (OpenCV's P1, P2 = scale * 3 * block^2):
#: a smaller P1 lets disparity follow slanted surfaces more closely (chosen on training worlds).
P1_SCALE, P2_SCALE = 4, 32


def horizontal_texture(rgb: np.ndarray, window: int = 9) -> np.ndarray:
    """(H, W) float32: the mean absolute horizontal intensity gradient (3x3 Sobel on the grey
    image, 0..255 scale) over a ``window`` x ``window`` box around each pixel. Matching along a
    row needs intensity that changes along the row: where this is at the level of image noise
    (a clear sky, a blank wall) every disparity fits about equally well."""
    grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY).astype(np.float32)
    return cv2.boxFilter(np.abs(cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)), -1, (window, window))


def fuse_passes(disps: list, valids: list) -> tuple[np.ndarray, np.ndarray]:
    """(disparity, agreement) of several passes: where the first pass is valid, the mean of it and
    the later passes within ``PASS_AGREEMENT_PX`` of it (elsewhere the first pass's value);
    agreement marks the pixels where every pass is valid and within that of the first."""
    first, valid = disps[0], valids[0]
    total, count = np.where(valid, first, 0.0), valid.astype(np.float32)
    for d_k, valid_k in zip(disps[1:], valids[1:]):
        agree = valid & valid_k & (np.abs(d_k - first) < PASS_AGREEMENT_PX)
        total += np.where(agree, d_k, 0.0)
        count += agree
    disp = np.where(valid, total / np.maximum(count, 1.0), first).astype(np.float32)
    return disp, valid & (count == len(disps))


def disparity_confidence(disp: np.ndarray) -> np.ndarray:
    """Confidence of each disparity: ``1 - SUBPIXEL_SIGMA_PX / disparity`` clipped to [0, 1], 0
    where it is NaN or not positive (a shifted pass can bring a zero disparity below 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(disp > 0, np.clip(1.0 - SUBPIXEL_SIGMA_PX / disp, 0.0, 1.0), 0.0).astype(np.float32)


def default_num_disparities(width: int) -> int:
    """Search range for an image ``width``: width/8 rounded up to a multiple of 16 (>= 16)."""
    return int(max(16, 16 * int(np.ceil(width / 8 / 16))))


def resample_columns(image: np.ndarray, offset_px: float) -> np.ndarray:
    """``image`` sampled at x + ``offset_px`` (linear interpolation, edge columns repeated)."""
    h, w = image.shape[:2]
    map_x = np.broadcast_to(np.arange(w, dtype=np.float32) + np.float32(offset_px), (h, w))
    map_y = np.broadcast_to(np.arange(h, dtype=np.float32)[:, None], (h, w))
    return cv2.remap(image, np.ascontiguousarray(map_x), np.ascontiguousarray(map_y), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


class SgbmEstimator(DepthEstimator):
    """StereoSGBM (3-way mode). ``num_disparities``: multiple of 16 or None (scaled by width);
    ``block_size``: odd >= 3 or None (5 px up to 400 px width, 7 above); ``passes``: phase-shifted
    matching passes, alternately flipped (1: OpenCV's output as is); ``require_agreement``: with
    several passes, keep only pixels where all of them match within 1 px; ``near_pass``: also match
    the half-size pair for surfaces beyond the search range (both in the module docstring)."""

    name = "sgbm"
    requires_stereo = True
    weights_status = "classical"

    def __init__(self, num_disparities: int | None = None, block_size: int | None = None,
                 uniqueness_ratio: int = 10, passes: int = DEFAULT_PASSES, require_agreement: bool = True,
                 near_pass: bool = True):
        if not 1 <= int(passes) <= 8 or int(passes) != passes:
            raise ValueError(f"passes must be an integer from 1 to 8, got {passes}")
        self.passes, self.require_agreement, self.near_pass = int(passes), bool(require_agreement), bool(near_pass)
        if num_disparities is not None and (num_disparities < 16 or num_disparities % 16):
            raise ValueError(f"num_disparities must be a positive multiple of 16, got {num_disparities}")
        if block_size is not None and (block_size < 3 or block_size % 2 == 0):
            raise ValueError(f"block_size must be odd and >= 3, got {block_size}")
        self.num_disparities, self.block_size = num_disparities, block_size
        self.uniqueness_ratio = int(uniqueness_ratio)
        self._matchers: dict[tuple[int, int], cv2.StereoSGBM] = {}
        self._near: dict[int, SgbmEstimator] = {}  # the near pass's matcher per search range

    def block_for(self, width: int) -> int:
        """The matching block size (px) for images ``width`` px wide."""
        return self.block_size or (5 if width <= 400 else 7)

    def matcher(self, width: int, height: int) -> cv2.StereoSGBM:
        """The (cached) OpenCV matcher for an image size."""
        key = (width, height)
        if key not in self._matchers:
            nd = self.num_disparities or default_num_disparities(width)
            bs = self.block_for(width)
            self._matchers[key] = cv2.StereoSGBM_create(
                minDisparity=0, numDisparities=nd, blockSize=bs,
                P1=P1_SCALE * 3 * bs * bs, P2=P2_SCALE * 3 * bs * bs, disp12MaxDiff=1,
                uniquenessRatio=self.uniqueness_ratio,
                speckleWindowSize=max(50, (width * height) // 3000), speckleRange=2,
                mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY)
        return self._matchers[key]

    def disparity(self, left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(disparity px float32 with NaN invalid, confidence) for rectified uint8 RGB images."""
        disps, valids = self.pass_disparities(left, right)
        disp, agree = fuse_passes(disps, valids)
        valid = agree if self.require_agreement else valids[0]
        disp[~valid] = np.nan
        if self.near_pass:
            disp = self._with_near_pass(left, right, disp)
        return disp, disparity_confidence(disp)

    def _with_near_pass(self, left: np.ndarray, right: np.ndarray, disp: np.ndarray) -> np.ndarray:
        """``disp`` with the near pass's disparity where it found a surface beyond
        ``NEAR_RANGE_FRACTION`` of the search range that ``disp`` misses by more than
        ``NEAR_MARGIN_PX`` (see the module docstring); as is where half the width cannot hold
        the search."""
        h, w = left.shape[:2]
        nd = self.matcher(w, h).getNumDisparities()
        if w // 2 <= nd:
            return disp
        if nd not in self._near:
            self._near[nd] = SgbmEstimator(nd, self.block_size, self.uniqueness_ratio, self.passes,
                                           self.require_agreement, near_pass=False)
        shrink = lambda im: cv2.resize(im, (w // 2, h // 2), interpolation=cv2.INTER_AREA)  # noqa: E731
        half, _ = self._near[nd].disparity(shrink(left), shrink(right))
        half = cv2.resize(half, (w, h), interpolation=cv2.INTER_NEAREST) * (w / (w // 2))
        with np.errstate(invalid="ignore"):
            near = (half > NEAR_RANGE_FRACTION * nd) & ~(np.abs(disp - half) <= NEAR_MARGIN_PX)
        return np.where(near, half, disp).astype(np.float32)

    def pass_disparities(self, left: np.ndarray, right: np.ndarray) -> tuple[list, list]:
        """Each pass's (disparity px float32, valid mask) for rectified uint8 RGB images, the
        first pass (upright, unshifted) first."""
        if left.shape != right.shape or left.ndim != 3:
            raise ValueError(f"left {left.shape} and right {right.shape} must be equal (H, W, 3) images")
        h, w = left.shape[:2]
        gl = cv2.cvtColor(left, cv2.COLOR_RGB2GRAY)
        gr = cv2.cvtColor(right, cv2.COLOR_RGB2GRAY)
        matcher = self.matcher(w, h)
        raw = self._match(matcher, gl, gr)
        disps, valids = [raw.astype(np.float32) / 16.0], [raw >= 0]  # OpenCV writes -16 where it rejects
        for k in range(1, self.passes):
            d_k, valid_k = self._shifted_pass(matcher, gl, gr, k / self.passes, flip=k % 2 == 1)
            disps.append(d_k)
            valids.append(valid_k)
        return disps, valids

    @staticmethod
    def _match(matcher, gl: np.ndarray, gr: np.ndarray) -> np.ndarray:
        """OpenCV's fixed-point disparity (16 x px) of a grey pair, its left band matched too:
        both images padded on the left by the search range (edge columns repeated), then cropped."""
        pad = matcher.getNumDisparities()
        pad_left = lambda g: cv2.copyMakeBorder(g, 0, 0, pad, 0, cv2.BORDER_REPLICATE)  # noqa: E731
        return matcher.compute(pad_left(gl), pad_left(gr))[:, pad:]

    @staticmethod
    def _shifted_pass(matcher, gl: np.ndarray, gr: np.ndarray, phase: float, flip: bool):
        """(disparity, valid) of one pass with the right image sampled at x + ``phase`` (its
        disparity shifted back), on the vertically flipped pair when ``flip``."""
        gr = resample_columns(gr, phase)
        if flip:
            raw = SgbmEstimator._match(matcher, np.ascontiguousarray(gl[::-1]), np.ascontiguousarray(gr[::-1]))[::-1]
        else:
            raw = SgbmEstimator._match(matcher, gl, gr)
        # right sampled at x + phase: the match of left x lies at x - (d + phase) there
        return raw.astype(np.float32) / 16.0 - np.float32(phase), raw >= 0

    def _estimate(self, inp: DepthInput, timer: StageTimer):
        with timer("sgbm"):
            disp, conf = self.disparity(inp.rgb, inp.right_rgb)
        with timer("postprocess"):
            return disparity_to_depth(disp, inp.camera.fx, inp.baseline), conf
