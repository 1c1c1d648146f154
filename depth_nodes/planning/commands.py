"""CLI subcommands of the planning layer: ``depth-nodes bench planner``.

Heavy modules are imported when a command runs, so building the CLI stays fast.
"""
from __future__ import annotations

import argparse

from depth_nodes.cliutil import add_json_flag


def _bench_planner(args) -> int:
    from depth_nodes.planning.bench import bench_planner

    return bench_planner(args)


def register(groups) -> None:
    p = groups["bench"].add_parser(
        "planner", help="time primitive generation, collision checking (map + depth image) and planning",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frames", type=int, default=5, help="random states/depth frames to time")
    p.add_argument("--repeat", type=int, default=30, help="timed calls per frame and stage")
    p.add_argument("--n-yaw", type=int, default=25)
    p.add_argument("--n-climb", type=int, default=5)
    p.add_argument("--samples", type=int, default=20, help="samples per primitive after t=0")
    p.add_argument("--horizon", type=float, default=2.0, help="primitive duration, s")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--hfov", type=float, default=90.0, help="horizontal field of view, degrees")
    p.add_argument("--voxel", type=float, default=0.1, help="distance grid voxel size, m")
    p.add_argument("--threads", type=int, default=0, help="OpenCV threads (0: leave OpenCV's default)")
    add_json_flag(p)
    p.set_defaults(func=_bench_planner)
