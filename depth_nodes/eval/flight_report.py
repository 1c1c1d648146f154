"""metrics.json + report.html for closed-loop flights (verdict table first)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from depth_nodes.cliutil import _jsonable
from depth_nodes.eval.flight import FlightResult
from depth_nodes.eval.report import Section, clip_latencies, plot_latency_histogram, plot_topdown_map, write_report


def obstacle_footprint(world, height: float, resolution: float = 0.2, pad: float = 0.1) -> np.ndarray:
    """(N, 3) points on a grid at ``height`` that lie inside or on an obstacle (for top-down plots)."""
    lo, hi = world.bounds[0], world.bounds[1]
    xs = np.arange(lo[0], hi[0], resolution)
    ys = np.arange(lo[1], hi[1], resolution)
    gx, gy = np.meshgrid(xs, ys, indexing="xy")
    pts = np.stack([gx.ravel(), gy.ravel(), np.full(gx.size, height)], axis=1).astype(np.float32)
    near = world.distance(pts) < resolution / 2 + pad
    return pts[near]


def topdown_figure(result: FlightResult, world=None, title: str = ""):
    points = None
    if world is not None and result.start is not None:
        points = obstacle_footprint(world, float(result.start[2]))
    return plot_topdown_map(points, result.path, result.start, result.goal, title=title)


def write_flight_report(out_dir, table: list[dict], results_by_setting: dict[str, list[FlightResult]],
                        meta: dict, worlds: dict | None = None, max_maps: int = 4) -> Path:
    """Write ``out_dir/metrics.json`` and ``out_dir/report.html``; return the report path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = {"results": table, "trials": {k: [r.summary() for r in v] for k, v in results_by_setting.items()},
               "run": meta}
    (out / "metrics.json").write_text(json.dumps(_jsonable(metrics), indent=2))
    verdict = [{"setting": row["setting"], "success_rate": row["success_rate"],
                "collision_rate": row["collision_rate"], "mean_speed_m_s": row["mean_speed_m_s"],
                "min_clearance_m": row["min_clearance_m"], "plan_ms_median": row["plan_ms_median"],
                "esdf_ms_median": row.get("esdf_ms_median"), "integrate_ms_median": row.get("integrate_ms_median"),
                "pass": row["success_rate"] >= row.get("target_success_rate", 0.9)} for row in table]
    sections = []
    for setting, results in results_by_setting.items():
        figs = []
        for r in results[:max_maps]:
            w = (worlds or {}).get((r.config["world"], r.config["seed"], str(r.config["density"])))
            figs.append((f"seed {r.config['seed']}: {r.end_reason}, {r.time_s:.1f} s",
                         topdown_figure(r, w, title=f"{setting} seed {r.config['seed']}")))
        clipped, cap = clip_latencies({"plan": np.concatenate([r.plan_ms for r in results]),
                                       "esdf": np.concatenate([r.esdf_ms for r in results]),
                                       "integrate": np.concatenate([r.integrate_ms for r in results])})
        figs.append((f"planning latency per step (values above the 99th percentile, {cap:.3g} ms, are drawn at it)",
                     plot_latency_histogram(clipped)))
        rows = [{"seed": r.config["seed"], "success": r.success, "collided": r.collided,
                 "time_s": r.time_s, "mean_speed_m_s": r.mean_speed_m_s, "min_clearance_m": r.min_clearance_m,
                 "end": r.end_reason, "end_distance_to_goal_m": r.end_distance_to_goal_m} for r in results]
        sections.append(Section(title=setting, tables=[("trials", rows)], figures=figs))
    return write_report(out / "report.html", "Closed-loop flight benchmark", verdict, sections, meta)
