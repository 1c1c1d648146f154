"""`depth-nodes demo`: fly a simulated forest with the full perception-mapping-planning loop.

By default the real node graph flies over DDS (one process per node, the
simulator in lockstep, a bag recorded; :mod:`depth_nodes.ros.demo_graph`) and
``out/demo/`` receives summary.json, topdown.png, depth_frames.png,
report.html and the bag. ``--in-process`` runs the same core objects in one
loop without ROS (report.html, metrics.json, topdown.png, depth_frames.png).
Either way a summary is printed and the exit status is 1 unless the vehicle
reached the goal without collision.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np

from depth_nodes.cliutil import emit_json, run_info
from depth_nodes.depth.interface import MODES
from depth_nodes.eval.flight import CEILING_ABOVE_START_M

log = logging.getLogger("depth_nodes.demo")

#: The demo's flight ceiling above the start (m): under the forest's crowns and high branches (README).
DEMO_CEILING_M = 1.0


def _depth_frames_figure(world, cfg, result, n: int = 4):
    """RGB | GT depth at a few poses along the flown path."""
    from depth_nodes.eval.report import plot_sample_frames
    from depth_nodes.geometry import pose_from_xyz_yaw
    from depth_nodes.sim.rig import SensorRig
    from depth_nodes.sim.suite import SensorSuite

    suite = SensorSuite(world, SensorRig())
    path = result.path
    samples = []
    for k in np.linspace(0, len(path) - 2, n).astype(int):
        d = path[min(k + 5, len(path) - 1)] - path[k]
        yaw = float(np.arctan2(d[1], d[0])) if np.linalg.norm(d[:2]) > 1e-3 else 0.0
        frame = suite.render(pose_from_xyz_yaw(path[k], yaw), np.zeros(3), np.random.default_rng(k),
                             stereo=False, radar=False)
        samples.append({"rgb": frame.rgb, "pred": frame.depth, "gt": frame.depth,
                        "title": f"t={k * cfg.sim_dt:.1f} s"})
    return plot_sample_frames(samples, max_depth_m=20.0)


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--image-size must look like WIDTHxHEIGHT, e.g. 160x120, got {text!r}") from None
    if not (32 <= w <= 1920 and 24 <= h <= 1080):
        raise ValueError(f"--image-size {w}x{h} is outside 32x24 .. 1920x1080")
    return w, h


def _print_graph_summary(s: dict) -> None:
    w = sys.stdout.write
    w("\n=== depth_nodes demo: closed-loop flight of the node graph over DDS (lockstep, simulated time) ===\n")
    ceiling = s.get("ceiling_above_start_m")
    w(f"world            {s['world']}; depth source: {s['depth']}"
      + ("" if ceiling is None else f"; ceiling {ceiling:g} m above the start") + "\n")
    w(f"goal reached     {'YES' if s['goal_reached'] else 'NO'} ({s['end']}; "
      f"{s['distance_to_goal_m']:.2f} m from the goal at the end)\n")
    w(f"collisions       {s['collisions']}\n")
    if "path_length_m" in s:
        w(f"flight           {s['flight_time_s']:.1f} s simulated, {s['path_length_m']:.1f} m, "
          f"mean {s['mean_speed_m_s']:.2f} m/s, min clearance {s['min_clearance_m']:.2f} m\n")
    w(f"wall time        start-up {s['startup_wall_s']:.0f} s, flight {s['flight_wall_s']:.0f} s, "
      f"total {s['total_wall_s']:.0f} s; lockstep timeouts {s['lockstep_timeouts']}\n")
    lat = s["e2e_latency_ms_median"]
    w(f"e2e latency      camera frame -> trajectory planned on it: median "
      f"{'n/a' if lat is None else f'{lat:.0f} ms'} (wall clock, lockstep)\n")
    w("stage latency    " + "; ".join(f"{r['node']}/{r['stage']} {r['median_ms']:.0f} ms"
                                      for r in s["stage_latencies_ms"]) + " (medians, wall)\n")
    w("topic rates      " + ", ".join(f"{t} {r:.1f} Hz" for t, r in s["topic_rates_hz_sim"].items()
                                      if t in ("camera/image_raw", "depth/image", "ground_truth/depth", "odom",
                                               "planner/trajectory")) + " (simulated time)\n")
    w(f"planner statuses {s['planner_statuses']}\n")
    w(f"report           {s['report']}\n")
    for key in ("topdown", "depth_frames"):
        if key in s["files"]:
            w(f"                 {s['files'][key]}\n")
    w(f"bag              {s['bag']}\n")


def cmd_demo(args) -> int:
    if args.in_process:
        return _cmd_in_process(args)
    # the node graph lives in the ROS layer (rclpy); imported only for this path
    from depth_nodes.ros.demo_graph import run_graph_demo

    world_args = {"world": args.world, "density": args.density, "seed": str(args.seed), "extent": args.extent}
    log.info("demo over DDS: %s", world_args)
    if not args.ceiling > 0:
        raise ValueError(f"--ceiling must be > 0 m above the start, got {args.ceiling}")
    if not args.timeout > 0 or not args.stall >= 0:
        raise ValueError(f"--timeout must be > 0 and --stall >= 0 s, got {args.timeout} and {args.stall}")
    summary = run_graph_demo(args.depth, world_args, Path(args.out), image_size=_parse_size(args.image_size),
                             timeout_s=args.timeout, progress=not args.json, ceiling_m=args.ceiling,
                             stall_s=args.stall if args.stall > 0 else None)
    summary["run"] = run_info(data=f"simulated {args.world} world, seed {args.seed}", seed=args.seed,
                              device="cpu", launch=world_args)
    ok = summary["goal_reached"] and not summary["collisions"]
    if args.json:
        emit_json(summary)
    else:
        _print_graph_summary(summary)
    if not ok:
        log.error("demo FAILED: the vehicle %s (%s)", "collided" if summary["collisions"] else
                  "did not reach the goal", summary["end"])
    return 0 if ok else 1


def _cmd_in_process(args) -> int:
    from depth_nodes.eval.flight import FlightConfig, aggregate, run_flight
    from depth_nodes.eval.flight_report import topdown_figure, write_flight_report
    from depth_nodes.graph import parse_extent
    from depth_nodes.sim.world import WorldSpec, build_world

    out = Path(args.out)
    extent = parse_extent(args.extent)
    cfg = FlightConfig(world=args.world, density=args.density, seed=args.seed, speed=args.speed, depth=args.depth,
                       extent=None if extent == [0.0, 0.0] else tuple(extent))
    log.info("demo: %s world (%s), seed %d, %.1f m/s, depth source %s", cfg.world, cfg.density, cfg.seed,
             cfg.speed, cfg.depth)
    result = run_flight(cfg)
    world = build_world(WorldSpec(cfg.world, cfg.seed, cfg.density, cfg.extent))
    name = f"demo {cfg.world} depth={cfg.depth} {cfg.speed:g} m/s"
    meta = run_info(data=f"simulated {cfg.world} world, seed {cfg.seed}", seed=cfg.seed, device="cpu")
    report = write_flight_report(out, [{"setting": name, **aggregate([result]), "target_success_rate": 1.0}],
                                 {name: [result]}, meta, {(cfg.world, cfg.seed, str(cfg.density)): world})
    topdown_figure(result, world, title=name).savefig(out / "topdown.png", dpi=110, bbox_inches="tight")
    _depth_frames_figure(world, cfg, result).savefig(out / "depth_frames.png", dpi=90, bbox_inches="tight")
    s = result.summary()
    summary = {
        "goal_reached": result.success, "collisions": int(result.collided), "end": result.end_reason,
        "flight_time_s": round(result.time_s, 2), "path_length_m": round(result.path_length_m, 2),
        "mean_speed_m_s": round(result.mean_speed_m_s, 2), "min_clearance_m": round(result.min_clearance_m, 3),
        "control_rate_hz": cfg.control_rate_hz, "plan_ms_median": round(s["plan_ms_median"], 2),
        "map_ms_median": round(s["map_ms_median"], 2), "depth_ms_median": round(s["depth_ms_median"], 2),
        "planner_status_counts": result.statuses, "wall_s": round(result.wall_s, 1),
        "report": str(report), "run": meta,
    }
    if args.json:
        emit_json(summary)
    else:
        w = sys.stdout.write
        w("\n=== depth_nodes demo: closed-loop flight (in-process, simulated time) ===\n")
        w(f"world            {cfg.world} ({cfg.density}), seed {cfg.seed}; depth source: {cfg.depth}\n")
        w(f"goal reached     {'YES' if result.success else 'NO'} ({result.end_reason})\n")
        w(f"collisions       {int(result.collided)}\n")
        w(f"flight           {result.time_s:.1f} s simulated, {result.path_length_m:.1f} m, "
          f"mean {result.mean_speed_m_s:.2f} m/s, min clearance {result.min_clearance_m:.2f} m\n")
        w(f"per control step depth {s['depth_ms_median']:.1f} ms, map+ESDF {s['map_ms_median']:.1f} ms, "
          f"plan {s['plan_ms_median']:.1f} ms (medians, wall time on this machine)\n")
        w(f"planner statuses {result.statuses}\n")
        w(f"report           {report}\n                 {out / 'topdown.png'}\n                 {out / 'depth_frames.png'}\n")
    return 0 if result.success and not result.collided else 1


def register_demo(root) -> None:
    p = root.add_parser("demo", help="fly a simulated forest end to end and write a report under out/demo",
                        description=__doc__.splitlines()[0])
    p.add_argument("--world", default="forest", choices=("forest", "urban", "indoor"))
    p.add_argument("--density", default="medium", choices=("sparse", "medium", "dense"))
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--extent", default="20x10", help="world size LENGTHxWIDTH in metres ('' = the world's default)")
    p.add_argument("--depth", default="mono-radar", choices=MODES + ("gt",),
                   help="depth source (gt: the simulator's ground-truth depth)")
    p.add_argument("--image-size", default="160x120", help="simulated camera WIDTHxHEIGHT (graph only)")
    p.add_argument("--ceiling", type=float, default=DEMO_CEILING_M,
                   help="the planner's ceiling above the start, metres (graph only; `eval flight` uses "
                        f"{CEILING_ABOVE_START_M:g}, see README)")
    p.add_argument("--timeout", type=float, default=600.0,
                   help="wall seconds allowed for the whole flight (graph only; lockstep keeps a slow flight "
                        "the same flight)")
    p.add_argument("--stall", type=float, default=120.0,
                   help="end the flight when simulated time has not advanced for this many wall seconds "
                        "(graph only; 0: no such limit)")
    p.add_argument("--in-process", action="store_true",
                   help="run the loop in this process without ROS (the pre-graph demo)")
    p.add_argument("--speed", type=float, default=3.0, help="cruise speed, m/s (--in-process only)")
    p.add_argument("--out", default="out/demo")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(func=cmd_demo)
