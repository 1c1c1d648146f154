"""The report of a recorded graph flight (`depth-nodes demo`): read the bag, draw, write HTML.

:func:`read_flight_bag` reads what the demo's ``bag_recorder`` wrote (flown
path from ``ground_truth/odom``, planned trajectories, planner and simulator
statuses, per-topic counts and rates in simulated time) and picks a few camera
frames with their estimated and ground-truth depth. :func:`write_demo_report`
turns that, plus the live observations of the run (stage latencies from
``diagnostics``, wall-clock rates, lockstep timeouts), into ``summary.json``,
``topdown.png``, ``depth_frames.png`` and ``report.html``.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from depth_nodes.cliutil import _jsonable
from depth_nodes.codec import depth_to_metres, image_to_rgb, stamp_to_ns

#: Depth frames drawn in depth_frames.png.
N_SAMPLE_FRAMES = 4
#: At most this many chosen primitives are drawn on the top-down map.
MAX_DRAWN_PRIMITIVES = 25


@dataclass
class FlightRecording:
    """The bag of one graph flight, decoded (times in simulated seconds, positions in ``map`` metres)."""

    path_t: np.ndarray                       # (N,) stamps of ground_truth/odom
    path: np.ndarray                         # (N, 3) body positions
    trajectories: list[tuple[float, np.ndarray]]  # (stamp, (K, 3) positions) per planner/trajectory
    planner_statuses: dict[str, int]         # planner/status "status" -> count
    sim_status: dict | None                  # last sim/status
    topic_counts: dict[str, int]
    topic_rates_hz: dict[str, float]         # messages per simulated second (header stamps)
    frames: list[dict] = field(default_factory=list)  # rgb, pred, gt, title (see plot_sample_frames)


def _translations(msg) -> np.ndarray:
    """(K, 3) positions of a MultiDOFJointTrajectory (first transform of each point)."""
    xyz = [(p.transforms[0].translation.x, p.transforms[0].translation.y, p.transforms[0].translation.z)
           for p in msg.points if len(p.transforms)]
    return np.asarray(xyz, np.float64).reshape(-1, 3)


def _rate(stamps: list[float]) -> float:
    """Messages per second of log time; messages logged at 0 (before the recorder's first /clock)
    are left out, or they would stretch the span to the epoch."""
    stamps = [t for t in stamps if t > 0]
    if len(stamps) < 2:
        return 0.0
    span = max(stamps) - min(stamps)
    return (len(stamps) - 1) / span if span > 0 else 0.0


def read_flight_bag(bag, depth_topic: str = "depth/image", n_frames: int = N_SAMPLE_FRAMES) -> FlightRecording:
    """Decode the demo bag at ``bag``; ``depth_topic`` is the estimated depth (ground_truth/depth for gt).

    ValueError when the bag lacks the flown path (ground_truth/odom or odom)."""
    from depth_nodes.eval.bagio import BagSource
    from depth_nodes.eval.decode import decode_message

    roles = {"traj": "planner/trajectory", "plan_status": "planner/status", "sim_status": "sim/status",
             "est_depth": depth_topic}
    src = BagSource(bag, roles)
    odom_role = "gt_odom" if "gt_odom" in src.roles else "odom"
    src.require([odom_role])
    stamps: dict[str, list[float]] = {}
    path_t, path, trajs, statuses, sim_status = [], [], [], Counter(), None
    for topic, _, log_ns, raw in src.raw_messages():
        stamps.setdefault(topic, []).append(log_ns * 1e-9)
    light = [r for r in (odom_role, "traj", "plan_status", "sim_status", "image") if r in src.roles]
    image_stamps: list[int] = []
    for role, _, stamp_ns, msg in src.messages(light):
        if role == odom_role:
            path_t.append(stamp_ns * 1e-9)
            path.append(decode_message(role, msg)[:3, 3])
        elif role == "traj":
            trajs.append((stamp_ns * 1e-9, _translations(msg)))
        elif role == "plan_status":
            statuses[json.loads(msg.data).get("status", "?")] += 1
        elif role == "sim_status":
            sim_status = json.loads(msg.data)
        elif role == "image":
            image_stamps.append(stamp_to_ns(msg.header.stamp))
    if not path:
        raise ValueError(f"bag {bag}: no {src.roles[odom_role]} messages: nothing was flown")
    frames = _sample_frames(src, image_stamps, n_frames, path_t[0] if path_t else 0.0)
    topics = sorted(stamps)
    return FlightRecording(
        path_t=np.asarray(path_t), path=np.asarray(path), trajectories=trajs, planner_statuses=dict(statuses),
        sim_status=sim_status, topic_counts={t: len(stamps[t]) for t in topics},
        topic_rates_hz={t: round(_rate(stamps[t]), 2) for t in topics}, frames=frames)


def _sample_frames(src, image_stamps: list[int], n: int, t0: float) -> list[dict]:
    """RGB | estimated depth | GT depth at ``n`` camera stamps spread over the flight (those with all three)."""
    roles = [r for r in ("image", "est_depth", "gt_depth") if r in src.roles]
    if len(roles) < 3 or not image_stamps or n <= 0:
        return []
    # skip the first second (the depth node may still be starting)
    usable = sorted(s for s in image_stamps if s * 1e-9 >= t0 + 1.0) or sorted(image_stamps)
    wanted = {usable[int(i)] for i in np.linspace(0, len(usable) - 1, n).round()}
    got: dict[int, dict] = {}
    for role, _, stamp_ns, msg in src.messages(roles):
        if stamp_ns in wanted:
            decode = image_to_rgb if role == "image" else depth_to_metres
            got.setdefault(stamp_ns, {})[role] = decode(msg)
    out = []
    for s in sorted(got):
        f = got[s]
        if len(f) == 3 and f["est_depth"].shape == f["gt_depth"].shape:
            out.append({"rgb": f["image"], "pred": f["est_depth"], "gt": f["gt_depth"],
                        "title": f"t={s * 1e-9 - t0:.1f} s"})
    return out


def topdown_with_primitives(rec: FlightRecording, world, goal, title: str = ""):
    """Top-down map: obstacles at flight height, the flown path, and some chosen primitives."""
    from depth_nodes.eval.flight_report import obstacle_footprint
    from depth_nodes.eval.report import plot_topdown_map

    start = rec.path[0]
    points = obstacle_footprint(world, float(start[2])) if world is not None else None
    fig = plot_topdown_map(points, rec.path, start, goal, title=title)
    ax = fig.axes[0]
    step = max(1, len(rec.trajectories) // MAX_DRAWN_PRIMITIVES)
    for i, (_, xyz) in enumerate(rec.trajectories[::step]):
        if len(xyz) > 1:
            ax.plot(xyz[:, 0], xyz[:, 1], color="tab:orange", lw=0.8, alpha=0.7,
                    label="chosen primitive" if i == 0 else None)
    ax.legend(loc="best", fontsize=7)
    return fig


def stage_latencies(diagnostics: dict[str, dict[str, str]]) -> list[dict]:
    """Rows ``node, stage, median_ms, p90_ms`` from nodes' diagnostics values."""
    rows = []
    for node, values in sorted(diagnostics.items()):
        for key, value in values.items():
            if key.startswith("latency_ms_median/"):
                stage = key.split("/", 1)[1]
                rows.append({"node": node.lstrip("/"), "stage": stage, "median_ms": float(value),
                             "p90_ms": float(values.get(f"latency_ms_p90/{stage}", "nan"))})
    return rows


def write_demo_report(out_dir, summary: dict, rec: FlightRecording | None, world, goal,
                      stages: list[dict]) -> dict[str, Path]:
    """Write summary.json, topdown.png, depth_frames.png (when frames exist) and report.html to ``out_dir``."""
    from depth_nodes.eval.report import Section, plot_sample_frames, write_report

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"summary": out / "summary.json"}
    files["summary"].write_text(json.dumps(_jsonable(summary), indent=2))
    figs = []
    if rec is not None:
        top = topdown_with_primitives(rec, world, goal, title=summary.get("title", ""))
        top.savefig(out / "topdown.png", dpi=110, bbox_inches="tight")
        files["topdown"] = out / "topdown.png"
        figs.append(("top-down: obstacles at flight height, flown path, chosen primitives", top))
        if rec.frames:
            frames = plot_sample_frames(rec.frames, max_depth_m=20.0)
            frames.savefig(out / "depth_frames.png", dpi=90, bbox_inches="tight")
            files["depth_frames"] = out / "depth_frames.png"
            figs.append(("camera | estimated depth | ground truth | error", frames))
    verdict = [{"goal_reached": summary["goal_reached"], "collisions": summary["collisions"],
                "end": summary["end"], "flight_time_s": summary["flight_time_s"],
                "pass": bool(summary["goal_reached"] and not summary["collisions"])}]
    rates = [{"topic": t, "messages": n, "rate_hz_sim": summary["topic_rates_hz_sim"].get(t),
              "rate_hz_wall": summary["topic_rates_hz_wall"].get(t)} for t, n in summary["topic_counts"].items()]
    sections = [Section("flight", values={k: summary[k] for k in (
                    "world", "depth", "path_length_m", "mean_speed_m_s", "lockstep_timeouts", "startup_wall_s",
                    "flight_wall_s", "e2e_latency_ms_median", "planner_statuses") if k in summary},
                        figures=figs),
                Section("per-stage latency (node diagnostics, wall ms)", tables=[("stages", stages)]),
                Section("topics (recorded bag)", tables=[("rates", rates)])]
    files["report"] = write_report(out / "report.html", "depth_nodes demo: closed-loop flight over DDS",
                                   verdict, sections, summary.get("run"))
    return files
