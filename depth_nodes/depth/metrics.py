"""Depth and disparity accuracy metrics.

Depth metrics (Eigen et al. conventions, depths in metres):
``abs_rel`` = mean |p - g| / g, ``sq_rel`` = mean (p - g)^2 / g,
``rmse`` = sqrt(mean (p - g)^2) [m], ``rmse_log`` = sqrt(mean (ln p - ln g)^2),
``delta1/2/3`` = fraction with max(p/g, g/p) < 1.25, 1.25^2, 1.25^3.

Counting: only pixels with valid ground truth (finite, > 0, and within the
optional ``max_depth``) are considered. The error metrics above are computed
over the pixels where the prediction is ALSO valid (finite, > 0);
``density`` = fraction of valid-GT pixels that have a valid prediction, so a
method that abstains is visible there. ``delta1_dense`` counts invalid
predictions as failures (delta1 times density). Figures are pooled over all
pixels of all frames (not averaged per frame). Per-bin metrics use the GT
depth: ``0-5``, ``5-10``, ``10-20``, ``20+`` metres.

``no_gt_near_rate``: of the pixels WITHOUT ground truth (NaN or <= 0), the
fraction predicted finite and nearer than :data:`NEAR_M`. In simulated data a
missing GT depth means the ray met no surface (sky), so such a prediction is a
phantom obstacle in front of the vehicle; in real data GT holes are merely
unmeasured and the figure means little.

For a stereo rig, ``add(..., disparity_scale=fx * baseline)`` also gives, per bin, the
disparity error behind the depth error: ``disparity_epe_px`` (mean |fb/p - fb/g|) and
``disparity_error_px_median`` (to :data:`DISPARITY_HIST_STEP_PX`). Near the truth,
abs_rel is about that error divided by the disparity fb/g, so the disparity precision a
depth goal needs falls with distance (0.05 at 15 m with fb = 16 px m asks for 0.053 px).

Disparity metrics (pixels): over all pixels with finite GT, ``badN`` is the
fraction whose |pred - gt| > N px, counting an invalid prediction as bad;
``epe`` (mean absolute error) is over pixels with a valid prediction;
``density`` as above.
"""
from __future__ import annotations

import numpy as np

#: Ground-truth distance bins (metres): name -> [low, high).
DEPTH_BINS = {"0-5": (0.0, 5.0), "5-10": (5.0, 10.0), "10-20": (10.0, 20.0), "20+": (20.0, np.inf)}
DELTA_BASE = 1.25
#: Range (m) within which a prediction where GT has no surface counts as a phantom obstacle.
NEAR_M = 20.0
_SUMS = ("n_gt", "n", "abs_rel", "sq_rel", "sq", "sq_log", "d1", "d2", "d3", "n_disp", "disp_err")
#: Resolution (px) of the histogram behind ``disparity_error_px_median``; errors past the last
#: of its DISPARITY_HIST_BINS bins are counted in that bin.
DISPARITY_HIST_STEP_PX = 0.005
DISPARITY_HIST_BINS = 2000


def _check_pair(pred, gt, name: str) -> tuple[np.ndarray, np.ndarray]:
    p, g = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    if p.shape != g.shape:
        raise ValueError(f"{name}: prediction shape {p.shape} differs from ground truth shape {g.shape}")
    return p, g


class DepthMetrics:
    """Accumulates depth errors over frames; :meth:`result` gives the metric dict."""

    def __init__(self, max_depth: float | None = None):
        self.max_depth = max_depth
        self.sums = {b: dict.fromkeys(_SUMS, 0.0) for b in ("all", *DEPTH_BINS)}
        self.disp_hist = {b: np.zeros(DISPARITY_HIST_BINS, np.int64) for b in ("all", *DEPTH_BINS)}
        self.no_gt = 0          # pixels without GT
        self.no_gt_near = 0     # ... predicted within NEAR_M

    def add(self, pred, gt, disparity_scale: float | None = None) -> None:
        """Add one frame: ``pred`` and ``gt`` depth images in metres (NaN/<=0 invalid).
        ``disparity_scale``: fx * baseline (px m) of a stereo rig, to add disparity errors."""
        p, g = _check_pair(pred, gt, "depth")
        if disparity_scale is not None and not (np.isfinite(disparity_scale) and disparity_scale > 0):
            raise ValueError(f"disparity_scale must be finite and > 0, got {disparity_scale}")
        gt_ok = np.isfinite(g) & (g > 0)
        if self.max_depth is not None:
            gt_ok &= g <= self.max_depth
        both = gt_ok & np.isfinite(p) & (p > 0)
        no_gt = ~(np.isfinite(g) & (g > 0))
        self.no_gt += int(np.count_nonzero(no_gt))
        with np.errstate(invalid="ignore"):
            self.no_gt_near += int(np.count_nonzero(no_gt & (p > 0) & (p < NEAR_M)))
        for name, (lo, hi) in (("all", (0.0, np.inf)), *DEPTH_BINS.items()):
            in_bin = (g >= lo) & (g < hi)
            s = self.sums[name]
            s["n_gt"] += int(np.count_nonzero(gt_ok & in_bin))
            m = both & in_bin
            pp, gg = p[m], g[m]
            if pp.size == 0:
                continue
            err = pp - gg
            ratio = np.maximum(pp / gg, gg / pp)
            s["n"] += pp.size
            s["abs_rel"] += float(np.sum(np.abs(err) / gg))
            s["sq_rel"] += float(np.sum(err * err / gg))
            s["sq"] += float(np.sum(err * err))
            s["sq_log"] += float(np.sum((np.log(pp) - np.log(gg)) ** 2))
            for k in (1, 2, 3):
                s[f"d{k}"] += int(np.count_nonzero(ratio < DELTA_BASE ** k))
            if disparity_scale is not None:
                de = np.abs(disparity_scale / pp - disparity_scale / gg)
                s["n_disp"] += de.size
                s["disp_err"] += float(de.sum())
                idx = np.minimum((de / DISPARITY_HIST_STEP_PX).astype(np.int64), DISPARITY_HIST_BINS - 1)
                self.disp_hist[name] += np.bincount(idx, minlength=DISPARITY_HIST_BINS)

    @staticmethod
    def _finish(s: dict, hist: np.ndarray) -> dict:
        n = s["n"]
        if n == 0:
            out = dict.fromkeys(("abs_rel", "sq_rel", "rmse", "rmse_log", "delta1", "delta2", "delta3"), None)
        else:
            out = {"abs_rel": s["abs_rel"] / n, "sq_rel": s["sq_rel"] / n, "rmse": float(np.sqrt(s["sq"] / n)),
                   "rmse_log": float(np.sqrt(s["sq_log"] / n)),
                   **{f"delta{k}": s[f"d{k}"] / n for k in (1, 2, 3)}}
        out["density"] = n / s["n_gt"] if s["n_gt"] else None
        out["delta1_dense"] = s["d1"] / s["n_gt"] if s["n_gt"] else None
        out["n_pixels_gt"] = int(s["n_gt"])
        out["n_pixels_evaluated"] = int(n)
        if s["n_disp"]:
            out["disparity_epe_px"] = s["disp_err"] / s["n_disp"]
            median_bin = int(np.searchsorted(np.cumsum(hist), 0.5 * s["n_disp"]))
            out["disparity_error_px_median"] = (median_bin + 0.5) * DISPARITY_HIST_STEP_PX
        return out

    def result(self) -> dict:
        """Overall metrics at the top level plus ``bins`` {bin name: metrics}."""
        out = self._finish(self.sums["all"], self.disp_hist["all"])
        out["bins"] = {name: self._finish(self.sums[name], self.disp_hist[name]) for name in DEPTH_BINS}
        out["no_gt_near_rate"] = self.no_gt_near / self.no_gt if self.no_gt else None
        out["n_pixels_no_gt"] = self.no_gt
        return out


def depth_metrics(pred, gt, max_depth: float | None = None) -> dict:
    """Metrics of a single depth image pair (see module docstring)."""
    m = DepthMetrics(max_depth)
    m.add(pred, gt)
    return m.result()


def disparity_metrics(pred, gt, thresholds=(1, 2, 4)) -> dict:
    """``epe``, ``bad{N}``, ``density`` for a disparity image pair (see module docstring)."""
    p, g = _check_pair(pred, gt, "disparity")
    gt_ok = np.isfinite(g)
    n_gt = int(np.count_nonzero(gt_ok))
    if n_gt == 0:
        raise ValueError("disparity ground truth has no finite pixel")
    ok = gt_ok & np.isfinite(p)
    err = np.abs(p[ok] - g[ok])
    out = {"epe": float(err.mean()) if err.size else None, "density": err.size / n_gt}
    for t in thresholds:
        out[f"bad{t:g}"] = 1.0 - np.count_nonzero(err <= t) / n_gt
    out["n_pixels_gt"] = n_gt
    return out
