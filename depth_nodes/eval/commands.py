"""`depth-nodes eval` subcommands of the generic evaluation layer: bag-info, compare."""
from __future__ import annotations

import argparse
import sys

from depth_nodes.cliutil import add_json_flag, emit_json, run_info
from depth_nodes.eval.bagio import GROUND_TRUTH_ROLES, BagSource
from depth_nodes.eval.compare import compare_metrics, flatten_numeric, format_table, load_metrics, rows_as_dicts


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


def register(groups) -> None:
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
