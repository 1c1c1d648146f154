"""Reconstruction quality of a TSDF map against ground truth (pure numpy/scipy)."""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def reconstruction_metrics(recon_points: np.ndarray, true_distance, gt_surface_points: np.ndarray,
                           threshold_m: float = 0.15) -> dict:
    """Accuracy and completeness of a reconstructed surface.

    ``recon_points`` (N, 3): reconstructed surface points (world metres).
    ``true_distance``: callable (N, 3) -> (N,) unsigned distance to the true surface.
    ``gt_surface_points`` (M, 3): samples of the true surface that the sensor observed.

    Returns ``accuracy_m_median`` / ``accuracy_m_p90`` (reconstructed point ->
    true surface) and ``completeness`` (fraction of ground-truth samples with
    a reconstructed point within ``threshold_m``), plus the counts.
    """
    r = np.asarray(recon_points, dtype=np.float64).reshape(-1, 3)
    g = np.asarray(gt_surface_points, dtype=np.float64).reshape(-1, 3)
    out = {"recon_points": int(len(r)), "gt_points": int(len(g)), "completeness_threshold_m": float(threshold_m)}
    if len(r) == 0:
        out.update(accuracy_m_median=None, accuracy_m_p90=None, completeness=0.0)
        return out
    acc = np.abs(np.asarray(true_distance(r), dtype=np.float64))
    out["accuracy_m_median"] = float(np.median(acc))
    out["accuracy_m_p90"] = float(np.percentile(acc, 90))
    if len(g):
        d, _ = cKDTree(r).query(g, k=1, distance_upper_bound=threshold_m)
        out["completeness"] = float(np.mean(np.isfinite(d)))
    else:
        out["completeness"] = None
    return out
