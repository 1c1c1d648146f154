"""`depth-nodes eval` subcommands: bag-info, compare, flight, replay; and `depth-nodes demo`.

Heavy modules are imported when a command runs, so building the CLI stays fast.
"""
from __future__ import annotations

import argparse
import sys

from depth_nodes.cliutil import add_json_flag, emit_json, run_info
from depth_nodes.depth.interface import MODES


def parse_topic_remaps(items) -> dict[str, str]:
    """``["image=/drone1/cam/image", ...]`` -> ``{"image": "/drone1/cam/image"}``."""
    out = {}
    for item in items or ():
        role, sep, topic = item.partition("=")
        if not sep or not role.strip() or not topic.strip():
            raise ValueError(f"--topic must look like ROLE=TOPIC (e.g. image=/drone1/cam/image), got {item!r}")
        out[role.strip()] = topic.strip()
    return out


def add_topic_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--topic", action="append", default=[], metavar="ROLE=TOPIC",
                        help="map a role to a bag topic (repeatable), e.g. image=/drone1/cam/image")


def _bag_info(args) -> int:
    from depth_nodes.eval.bagio import GROUND_TRUTH_ROLES, BagSource

    src = BagSource(args.bag, topics=parse_topic_remaps(args.topic))
    info = src.info()
    d = info.as_dict()
    if args.json:
        emit_json({**d, "run": run_info(data=str(args.bag))})
        return 0
    out = sys.stdout
    out.write(f"bag:       {d['path']}\nstorage:   {d['storage']}\n"
              f"duration:  {d['duration_s']:.3f} s ({d['message_count']} messages)\n"
              f"ground truth: {'yes' if d['has_ground_truth'] else 'no'} "
              f"(roles {', '.join(r for r in GROUND_TRUTH_ROLES if r in info.roles) or 'none'})\n")
    width = max([len(t.topic) for t in info.topics] + [5])
    out.write(f"{'topic'.ljust(width)}  {'count':>7}  {'role':<12}  type\n")
    for t in info.topics:
        out.write(f"{t.topic.ljust(width)}  {t.count:>7}  {(t.role or '-'):<12}  {t.msgtype}\n")
    return 0


def _compare(args) -> int:
    from depth_nodes.eval.compare import compare_metrics, flatten_numeric, format_table, load_metrics, rows_as_dicts

    a, b = load_metrics(args.a), load_metrics(args.b)
    rows = compare_metrics(a, b)
    if args.json:
        keys_a, keys_b = flatten_numeric(a), flatten_numeric(b)
        emit_json({"a": str(args.a), "b": str(args.b), "n_keys": len(rows),
                   "only_in_a": [k for k in keys_a if k not in keys_b],
                   "only_in_b": [k for k in keys_b if k not in keys_a],
                   "rows": rows_as_dicts(rows), "run": run_info(data=[str(args.a), str(args.b)])})
        return 0
    sys.stdout.write(f"A: {args.a}\nB: {args.b}\n" + format_table(rows) + "\n")
    return 0


def _parse_list(text: str, kind, name: str) -> list:
    try:
        values = [kind(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--{name} must be a comma-separated list, got {text!r}") from None
    if not values:
        raise ValueError(f"--{name} is empty")
    return values


def _parse_options(text: str | None) -> dict:
    """``key=value,key=value`` -> dict; values true/false -> bool, numbers -> int/float, else str."""
    out: dict = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--depth-options entries must be key=value, got {item!r}")
        value = value.strip()
        if value.lower() in ("true", "false"):
            out[key.strip()] = value.lower() == "true"
            continue
        for kind in (int, float):
            try:
                out[key.strip()] = kind(value)
                break
            except ValueError:
                pass
        else:
            out[key.strip()] = value
    return out


def _flight(args) -> int:
    import logging

    from depth_nodes.eval.flight import FlightConfig, aggregate, run_trials
    from depth_nodes.eval.flight_report import write_flight_report
    from depth_nodes.sim.world import WorldSpec, build_world

    speeds = _parse_list(args.speeds, float, "speeds")
    worlds_kinds = _parse_list(args.world, str, "world")
    depths = _parse_list(args.depth, str, "depth")
    if args.trials < 1:
        raise ValueError(f"--trials must be >= 1, got {args.trials}")
    settings = [(w, d, v) for w in worlds_kinds for d in depths for v in speeds]
    density = float(args.density) if args.density.replace(".", "", 1).isdigit() else args.density
    options = _parse_options(args.depth_options) or None  # FlightConfig checks them against each depth
    configs = {s: [FlightConfig(world=s[0], density=density, seed=args.seed + i, speed=s[2], depth=s[1],
                                depth_options=options, weights=args.weights)
                   for i in range(args.trials)] for s in settings}
    flat = [c for cs in configs.values() for c in cs]
    logging.getLogger(__name__).info("%d settings x %d trials = %d flights on %d worker(s)",
                                     len(settings), args.trials, len(flat), args.workers)
    results = run_trials(flat, workers=args.workers, progress=True)
    by_setting, table, k = {}, [], 0
    for s in settings:
        rs = results[k:k + args.trials]
        k += args.trials
        name = f"{s[0]} {args.density} depth={s[1]} {s[2]:g} m/s" + (f" {args.depth_options}" if options else "")
        by_setting[name] = rs
        table.append({"setting": name, "world": s[0], "density": args.density, "depth": s[1], "speed_m_s": s[2],
                      **({"weights": args.weights} if args.weights else {}), **aggregate(rs)})
    meta = run_info(data=f"simulated worlds {worlds_kinds}, density {args.density}, "
                         f"world seeds {args.seed}..{args.seed + args.trials - 1}",
                    seed=args.seed, device="cpu", workers=args.workers)
    if args.out:
        worlds = {(c.world, c.seed, str(c.density)): build_world(WorldSpec(c.world, c.seed, c.density))
                  for cs in configs.values() for c in cs[:4]}
        path = write_flight_report(args.out, table, by_setting, meta, worlds)
        logging.getLogger(__name__).info("report: %s", path)
    if args.json:
        emit_json({"results": table, "run": meta})
        return 0
    cols = ("setting", "success_rate", "collision_rate", "mean_speed_m_s", "min_clearance_m", "plan_ms_median",
            "esdf_ms_median", "integrate_ms_median")
    sys.stdout.write(" | ".join(cols) + "\n")
    for row in table:
        sys.stdout.write(" | ".join(f"{row[c]:.3g}" if isinstance(row[c], float) else str(row[c]) for c in cols)
                         + "\n")
    return 0


def _replay(args) -> int:
    import logging
    import os
    from pathlib import Path

    from depth_nodes.eval.replay import ReplayConfig, parse_pose7, replay_bag
    from depth_nodes.eval.replay_report import stdout_summary, write_metrics, write_replay_report

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        import cv2
        import torch

        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    config = ReplayConfig(
        mode=args.mode, topics=parse_topic_remaps(args.topic), max_frames=args.max_frames, weights=args.weights,
        T_body_camera=None if args.camera_to_body is None else parse_pose7(args.camera_to_body, "--camera-to-body"),
        T_camera_radar=None if args.radar_to_camera is None else parse_pose7(args.radar_to_camera,
                                                                             "--radar-to-camera"),
        map_window_m=args.map_window_m, seed=args.seed, progress=True)
    result = replay_bag(args.bag, config)
    out = Path(args.out) if args.out else Path("out/replay") / Path(args.bag).resolve().name
    threads = args.threads or int(os.environ.get("OMP_NUM_THREADS", 0)) or os.cpu_count()
    run = run_info(data=str(args.bag), mode=args.mode, seed=args.seed, threads=threads, device="cpu",
                   weights=args.weights, out=str(out))
    write_metrics(out, result, run)
    report = write_replay_report(out, result, run)
    logging.getLogger(__name__).info("replay: %s", report)
    summary = stdout_summary(result, run)
    if args.json:
        emit_json(summary)
        return 0
    m = result.metrics
    sys.stdout.write(f"bag: {m['bag']} mode: {m['mode']} ground truth: {'yes' if m['ground_truth'] else 'no'}\n"
                     f"frames: {m['frames']} fps: {m['fps']:.2f} "
                     f"wall/bag: {m['replay_wall_over_bag_duration']:.3f}\n")
    for row in summary["verdict"]:
        sys.stdout.write(f"{row['check']}: {row['value']:.4g} (target {row['target']}) "
                         f"{'PASS' if row['pass'] else 'FAIL'}\n")
    sys.stdout.write(f"report: {report}\n")
    return 0


def register(groups) -> None:
    import os

    from depth_nodes.eval.demo import register_demo
    from depth_nodes.eval.map_eval import register_map_eval

    register_demo(groups["root"])
    register_map_eval(groups)

    p = groups["eval"].add_parser(
        "flight", help="closed-loop flight benchmark in simulated worlds (no ROS)",
        description="Fly trials through simulated worlds with the full perception-mapping-planning loop "
                    "in simulated time; trial i uses world seed SEED+i.")
    p.add_argument("--world", default="forest", help="world kinds, comma-separated (forest,urban,indoor)")
    p.add_argument("--density", default="medium", help="sparse, medium, dense or trees per 100 m^2")
    p.add_argument("--speeds", default="3", help="cruise speeds in m/s, comma-separated")
    p.add_argument("--trials", type=int, default=20, help="trials per setting")
    p.add_argument("--seed", type=int, default=100, help="world seed of the first trial")
    p.add_argument("--depth", default="gt", help=f"depth sources, comma-separated: {', '.join(('gt',) + MODES)}")
    p.add_argument("--depth-options", default=None,
                   help="estimator options for every --depth source, key=value,... (e.g. refine=true or "
                        "texture_min=4 for stereo-hybrid; see make_estimator)")
    p.add_argument("--weights", default=None,
                   help="the depth network's weights (.safetensors, its card beside it) instead of the packaged "
                        "ones: fly a newly trained network without installing it")
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 1)),
                   help="parallel processes (default: all cores)")
    p.add_argument("--out", default=None, help="directory for metrics.json and report.html")
    add_json_flag(p)
    p.set_defaults(func=_flight)

    p = groups["eval"].add_parser("bag-info", help="topics, types, counts, duration, ground truth of a bag",
                                  description="Summarise a rosbag2 bag (directory, .mcap or .db3).")
    p.add_argument("bag", help="bag directory or .mcap/.db3 file")
    add_topic_flag(p)
    add_json_flag(p)
    p.set_defaults(func=_bag_info)

    p = groups["eval"].add_parser("compare", help="side-by-side table of two metrics.json files",
                                  description="Compare the numeric leaves of two metrics JSON files "
                                              "(diff = B - A, ratio = B / A).")
    p.add_argument("a", help="metrics.json of run A (or its directory)")
    p.add_argument("b", help="metrics.json of run B (or its directory)")
    add_json_flag(p)
    p.set_defaults(func=_compare)

    p = groups["eval"].add_parser(
        "replay", help="offline replay of a bag through depth -> TSDF -> ESDF -> planner (no DDS)",
        description="Replay a rosbag2 deterministically through the same core objects the nodes use, as fast "
                    "as the CPU allows; write metrics.json and report.html. With ground truth (sim bags) depth, "
                    "map and planner are scored; without it only timing, coverage and self-consistency.")
    p.add_argument("bag", help="bag directory or .mcap/.db3 file")
    p.add_argument("--mode", default="gt", choices=("gt",) + MODES,
                   help="depth source (gt: ground_truth/depth)")
    add_topic_flag(p)
    p.add_argument("--out", default=None, help="output directory (default out/replay/<bag name>)")
    p.add_argument("--max-frames", type=int, default=None, help="stop after N frames")
    p.add_argument("--weights", default=None, help="network weights .safetensors (default: packaged)")
    p.add_argument("--camera-to-body", default=None, metavar="X,Y,Z,QX,QY,QZ,QW",
                   help="T_body_camera (optical frame in base_link); overrides the bag's sim/rig "
                        "(default: sim/rig, else the sim rig's mount)")
    p.add_argument("--radar-to-camera", default=None, metavar="X,Y,Z,QX,QY,QZ,QW",
                   help="T_camera_radar; overrides the bag's sim/rig (default: sim/rig, else identity)")
    p.add_argument("--map-window-m", type=float, default=None,
                   help="TSDF sliding-window radius in metres (default: keep the whole map for scoring; "
                        "the mapper node uses 30)")
    p.add_argument("--seed", type=int, default=0, help="recorded in run info (the replay is deterministic)")
    p.add_argument("--threads", type=int, default=None, help="torch/OpenCV threads (default: library default)")
    add_json_flag(p)
    p.set_defaults(func=_replay)
