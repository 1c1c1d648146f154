"""metrics.json + self-contained report.html for a bag replay (verdict table first).

Report order: verdict, error vs distance, per-frame error, latency histogram,
top-down map with the odometry path, sample frames (RGB | prediction | GT | error).
Without ground truth the depth figures are replaced by the valid-depth
fraction and the report says that only timing, coverage and self-consistency
are available.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from depth_nodes.cliutil import _jsonable
from depth_nodes.eval.replay import STAGES, ReplayResult

#: Verdict targets: (metrics path, comparison, target). Rows whose value is missing are left out.
TARGETS = (
    ("replay_wall_over_bag_duration", "<=", 2.0),
    ("depth.abs_rel", "<=", 0.15),
    ("depth.delta1", ">=", 0.85),
    ("depth.density", ">=", 0.5),
    ("map.accuracy_m_median", "<=", 0.10),
    ("map.completeness", ">=", 0.5),
    ("planner.feasible_fraction", ">=", 0.9),
    ("planner.true_collision_fraction", "<=", 0.0),
    ("coverage.valid_depth_fraction_mean", ">=", 0.5),
    ("self_consistency.map_agreement_median", ">=", 0.5),
)


def _get(metrics: dict, dotted: str):
    v = metrics
    for k in dotted.split("."):
        if not isinstance(v, dict) or k not in v:
            return None
        v = v[k]
    return v


def verdict_rows(metrics: dict) -> list[dict]:
    """One row per target with a value: check, value, target, pass."""
    rows = []
    for key, op, target in TARGETS:
        v = _get(metrics, key)
        if v is None or not np.isfinite(v):
            continue
        ok = v <= target if op == "<=" else v >= target
        rows.append({"check": key, "value": float(v), "target": f"{op} {target:g}", "pass": bool(ok)})
    return rows


def stdout_summary(result: ReplayResult, run: dict) -> dict:
    """The ``--json`` object: every metric except the per-frame list, plus run info."""
    return {**result.metrics, "verdict": verdict_rows(result.metrics), "run": run}


def write_metrics(out_dir, result: ReplayResult, run: dict) -> Path:
    """``out_dir/metrics.json``: the summary plus ``per_frame`` rows."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "metrics.json"
    doc = {**stdout_summary(result, run), "per_frame": result.per_frame}
    path.write_text(json.dumps(_jsonable(doc), indent=2))
    return path


def _per_frame_series(result: ReplayResult, key: str) -> np.ndarray:
    return np.asarray([np.nan if r.get(key) is None else r[key] for r in result.per_frame], dtype=np.float64)


def write_replay_report(out_dir, result: ReplayResult, run: dict) -> Path:
    """Write ``report.html`` in ``out_dir``; return its path."""
    from depth_nodes.depth.metrics import DEPTH_BINS
    from depth_nodes.eval.report import (Section, clip_latencies, plot_error_vs_distance, plot_latency_histogram,
                                         plot_per_frame, plot_sample_frames, plot_topdown_map, write_report)

    m = result.metrics
    label = m["mode"]
    sections = []
    summary = {k: m[k] for k in ("ground_truth", "ground_truth_note", "frames", "frames_processed", "fps",
                                 "replay_wall_s", "replayed_duration_s", "replay_wall_over_bag_duration")}
    summary.update({f"{s}_ms_median": m.get(f"{s}_ms_median") for s in (*STAGES, "frame")})
    summary["frames_skipped"] = json.dumps(m["frames_skipped"]) if m["frames_skipped"] else "none"
    sections.append(Section("Run", values=summary))
    if m["depth"] is not None:
        d = m["depth"]
        edges = [lo for lo, _ in DEPTH_BINS.values()] + [max(40.0, list(DEPTH_BINS.values())[-1][0] * 2)]
        per_bin = [np.nan if d["bins"][b]["abs_rel"] is None else d["bins"][b]["abs_rel"] for b in DEPTH_BINS]
        figs = [("abs_rel per ground-truth distance bin (last bin is open-ended)",
                 plot_error_vs_distance(edges, {label: per_bin}, "abs_rel")),
                ("abs_rel per frame", plot_per_frame({label: _per_frame_series(result, "abs_rel")}, "abs_rel"))]
        rows = [{"bin_m": b, **{k: d["bins"][b][k] for k in ("abs_rel", "rmse", "delta1", "density",
                                                              "n_pixels_evaluated")}} for b in DEPTH_BINS]
        values = {k: d[k] for k in ("abs_rel", "sq_rel", "rmse", "rmse_log", "delta1", "delta2", "delta3",
                                    "density", "delta1_dense")}
        sections.append(Section("Depth accuracy", values=values, tables=[("per distance bin", rows)], figures=figs))
    else:
        sections.append(Section(
            "Depth (no ground truth)", text="This bag has no ground truth: depth accuracy is not measured; "
            "shown is the fraction of pixels with a depth estimate per frame.",
            figures=[("valid depth fraction per frame",
                      plot_per_frame({label: _per_frame_series(result, "valid_fraction")}, "valid fraction"))]))
    lat = {s: result.latencies_ms[s] for s in STAGES if result.latencies_ms[s].size}
    if lat:
        clipped, cap = clip_latencies(lat)
        sections.append(Section("Latency", figures=[
            (f"per-stage latency per frame (values above the 99th percentile, {cap:.3g} ms, are drawn at it)",
             plot_latency_histogram(clipped))]))
    points = result.surface_points if len(result.surface_points) else None
    path = result.path_xyz if len(result.path_xyz) else None
    sections.append(Section(
        "Map and path", values={**m["coverage"], **(m["map"] or {})},
        text="TSDF surface points coloured by height, odometry path in red.",
        figures=[("top-down map", plot_topdown_map(points, path, result.start, result.goal,
                                                   title=f"{Path(m['bag']).name} ({label})"))]))
    planner = {k: v for k, v in m["planner"].items() if k != "status_counts"}
    planner["status_counts"] = json.dumps(m["planner"]["status_counts"])
    sections.append(Section("Planner", values=planner))
    sections.append(Section("Self-consistency", values=m["self_consistency"],
                            text="Each depth frame against the map built from the frames before it."))
    if result.samples:
        sections.append(Section("Sample frames", figures=[("RGB | prediction | GT | |error|",
                                                           plot_sample_frames(result.samples))]))
    return write_report(Path(out_dir) / "report.html", f"Bag replay: {Path(m['bag']).name} ({label})",
                        verdict_rows(m), sections, {k: v for k, v in run.items() if not isinstance(v, dict)})
