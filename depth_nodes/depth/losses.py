"""Training losses for the depth networks (masks are float (B, 1, H, W), 1 = valid GT).

Mono: scale-invariant log loss + multi-scale gradient matching on log depth +
binary cross-entropy of the confidence against "is a delta1 inlier" (+ optionally a
relative-error term, a hinge keeping pixels without a surface far, or a teacher network's
output where there is no GT).
Stereo: smooth-L1 on coarse and refined disparity + confidence BCE against
"error below 1 px". Refiner (the stereo hybrid's): relative disparity error.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from depth_nodes.depth.disparity import MIN_DISPARITY_PX

SILOG_LAMBDA = 0.85
#: Confidence targets: |log error| < ln 1.25 (mono), |disparity error| < 1 px (stereo).
MONO_INLIER_LOG = math.log(1.25)
STEREO_INLIER_PX = 1.0
#: Mono ``no_return_far``: pixels that met no surface must come out at least this far (m) ...
FAR_M = 30.0
#: ... with this weight on the shortfall (log units).
FAR_WEIGHT = 0.5
#: Mono ``rel_weight``: ratios pred/gt above e**REL_CLIP_LOG add no further gradient (silog still does).
REL_CLIP_LOG = 2.0


def silog(log_pred: torch.Tensor, log_gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Scale-invariant log loss per image, averaged over the batch."""
    n = mask.sum(dim=(1, 2, 3)).clamp(min=1.0)
    d = (log_pred - log_gt) * mask
    mean = d.sum(dim=(1, 2, 3)) / n
    mean_sq = (d * d).sum(dim=(1, 2, 3)) / n
    return torch.sqrt((mean_sq - SILOG_LAMBDA * mean * mean).clamp(min=1e-8)).mean()


def gradient_matching(log_pred: torch.Tensor, log_gt: torch.Tensor, mask: torch.Tensor, scales: int = 4):
    """Mean |grad(log_pred - log_gt)| over x/y neighbours that are both valid, at ``scales`` strides."""
    total = log_pred.new_zeros(())
    for k in range(scales):
        s = 2 ** k
        d = ((log_pred - log_gt) * mask)[..., ::s, ::s]
        m = mask[..., ::s, ::s]
        mx, my = m[..., :, 1:] * m[..., :, :-1], m[..., 1:, :] * m[..., :-1, :]
        gx = (d[..., :, 1:] - d[..., :, :-1]).abs() * mx
        gy = (d[..., 1:, :] - d[..., :-1, :]).abs() * my
        total = total + (gx.sum() + gy.sum()) / (mx.sum() + my.sum()).clamp(min=1.0)
    return total / scales


def confidence_bce(logit: torch.Tensor, inlier: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the confidence logit against an inlier target, over valid pixels."""
    bce = F.binary_cross_entropy_with_logits(logit, inlier.float(), reduction="none")
    return (bce * mask).sum() / mask.sum().clamp(min=1.0)


def relative_error(log_pred: torch.Tensor, log_gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean |pred - gt| / gt over valid pixels: the abs_rel metric itself.

    silog is 85 % blind to an image's mean log error and weighs a log error the same at
    every range; this term is not, and pulls each pixel toward the value abs_rel prefers."""
    ratio = torch.exp((log_pred - log_gt).clamp(max=REL_CLIP_LOG))
    return ((ratio - 1.0).abs() * mask).sum() / mask.sum().clamp(min=1.0)


def far_hinge(log_pred: torch.Tensor, no_return: torch.Tensor, far_m: float = FAR_M) -> torch.Tensor:
    """Mean over ``no_return`` pixels of how far (log units) the prediction falls short of ``far_m``:
    nothing is asked of them but to be at least that far."""
    short = torch.relu(math.log(far_m) - log_pred) * no_return
    return short.sum() / no_return.sum().clamp(min=1.0)


def teacher_match(log_pred: torch.Tensor, log_teacher: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """Mean |log_pred - log_teacher| over the ``where`` pixels (log units)."""
    return ((log_pred - log_teacher).abs() * where).sum() / where.sum().clamp(min=1.0)


def mono_loss(model, batch: dict, no_return_far: bool = False, rel_weight: float = 0.0,
              teacher=None, teacher_weight: float = 1.0) -> tuple[torch.Tensor, dict]:
    """Total mono+radar loss and its parts (floats) for a batch from DepthDataset.

    ``rel_weight`` > 0 adds that much of :func:`relative_error`.

    ``teacher`` (a MonoRadarNet, not trained here): pixels without GT are pulled toward its log
    depth on the same inputs (:func:`teacher_match`, weight ``teacher_weight``), so that a new
    network keeps a proven one's answer where the data has none (a simulated sky).

    ``no_return_far`` (simulated data, where a pixel without GT met no surface): such pixels
    also pay :func:`far_hinge` (weight :data:`FAR_WEIGHT`) when predicted nearer than
    :data:`FAR_M`; left out, the network put 88 % of held-out sky pixels within 20 m."""
    logits = model.logits(batch["image"], batch["radar"])
    log_pred = model.log_depth(logits)
    mask = batch["valid"]
    log_gt = torch.log(batch["depth"].clamp(min=1e-3))
    si = silog(log_pred, log_gt, mask)
    grad = gradient_matching(log_pred, log_gt, mask)
    inlier = ((log_pred - log_gt).abs() < MONO_INLIER_LOG).detach()
    conf = confidence_bce(logits[:, 1:], inlier, mask)
    total = si + 0.5 * grad + 0.1 * conf
    parts = {"silog": si.item(), "grad": grad.item(), "conf": conf.item()}
    if rel_weight > 0:
        rel = relative_error(log_pred, log_gt, mask)
        total = total + rel_weight * rel
        parts["rel"] = rel.item()
    if no_return_far:
        far = far_hinge(log_pred, 1.0 - mask)
        total = total + FAR_WEIGHT * far
        parts["far"] = far.item()
    if teacher is not None:
        with torch.no_grad():
            log_teacher = teacher.log_depth(teacher.logits(batch["image"], batch["radar"]))
        match = teacher_match(log_pred, log_teacher, 1.0 - mask)
        total = total + teacher_weight * match
        parts["teacher"] = match.item()
    return total, parts


def stereo_loss(model, batch: dict, no_return_far: bool = False) -> tuple[torch.Tensor, dict]:
    """Total stereo loss and its parts: smooth-L1 (coarse 0.5, refined 1.0) + 0.1 confidence BCE,
    over pixels with valid GT disparity inside the search range.

    ``no_return_far``: pixels without GT depth saw nothing at all (a simulator's sky) and are
    trained toward zero disparity, i.e. infinitely far, like any other pixel. Without it the
    network is never told what to do there, and textureless sky comes out as close obstacles.
    Only for data whose missing depth means "no surface" (not real sensors' holes)."""
    coarse, refined, conf_logit = model.coarse_and_refined(batch["image"], batch["right"])
    gt = batch["disparity"]
    mask = batch["valid"] * (gt > 0).float() * (gt < model.max_disparity).float()
    if no_return_far:
        mask = mask + (1.0 - batch["valid"])  # gt is 0 there
    n = mask.sum().clamp(min=1.0)
    l_coarse = (F.smooth_l1_loss(coarse, gt, reduction="none") * mask).sum() / n
    l_ref = (F.smooth_l1_loss(refined, gt, reduction="none") * mask).sum() / n
    conf = confidence_bce(conf_logit, ((refined - gt).abs() < STEREO_INLIER_PX).detach(), mask)
    total = 0.5 * l_coarse + l_ref + 0.1 * conf
    return total, {"coarse": l_coarse.item(), "refined": l_ref.item(), "conf": conf.item()}


def refine_loss(model, batch: dict) -> tuple[torch.Tensor, dict]:
    """Refiner loss: the depth's relative error, ``|pred - gt| / pred`` in disparity terms (depth
    ``fb / pred`` against ``fb / gt``: exactly abs_rel), over pixels with GT disparity of at least
    ``MIN_DISPARITY_PX`` where the hybrid's is too (the refiner passes the others through).
    Dividing by the GT disparity instead would cap the penalty of a
    disparity pulled toward zero at 1, where its depth error has no bound: a refiner trained so
    sends some near pixels far away. ``input`` is the same error of the hybrid's disparity
    before refinement, for comparison."""
    (pred,) = model(batch["image"], batch["right"], batch["hybrid"], batch["source"])
    gt = batch["disparity"]
    mask = (batch["valid"] > 0) & (gt >= MIN_DISPARITY_PX) & (batch["hybrid"] >= MIN_DISPARITY_PX)
    n = mask.sum().clamp(min=1)

    def abs_rel(disp):
        return ((disp - gt).abs() / disp.clamp(min=MIN_DISPARITY_PX) * mask).sum() / n

    return abs_rel(pred), {"input": abs_rel(batch["hybrid"]).item()}
