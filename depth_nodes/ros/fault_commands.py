"""CLI: ``depth-nodes eval faults``: the fault-injection table of the running graph (issue #9)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from depth_nodes.cliutil import add_json_flag, emit_json

log = logging.getLogger(__name__)


def markdown_table(result: dict) -> str:
    """The fault table (fault | expected | observed | pass) and the burst figures as markdown."""
    lines = ["| fault | expected | observed | pass |", "|---|---|---|---|"]
    for r in result["rows"]:
        cells = [r["fault"], r["expected"], r["observed"], "skipped" if r.get("skipped") else
                 ("yes" if r["pass"] else "NO")]
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
    lines.append("")
    for key in ("burst_rss_growth_mb", "burst_recovery_s", "latency_ms_median_before_burst",
                "latency_ms_median_after_burst", "wall_s"):
        value = result.get(key)
        if value is not None:
            lines.append(f"- {key}: {value:.2f}")
    lines.append(f"- all_pass: {result['all_pass']}")
    return "\n".join(lines)


def _cmd_faults(args) -> int:
    from depth_nodes.eval.faults import select_faults
    from depth_nodes.ros.fault_run import run_faults

    faults = select_faults(args.only)
    log.info("running %d faults on the live graph (lockstep simulator, gt depth); this takes minutes",
             len(faults))
    result = run_faults(faults, burst_s=args.burst_s, timeout_s=args.timeout)
    table = markdown_table(result)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "faults.json").write_text(json.dumps(result, indent=1, default=str))
        (out / "faults.md").write_text(table + "\n")
        log.info("wrote %s and %s", out / "faults.json", out / "faults.md")
    if args.json:
        emit_json(result)
    else:
        print(table)
    return 0 if result["all_pass"] else 1


def register(groups) -> None:
    p = groups["eval"].add_parser(
        "faults", help="inject faults into the running graph and print the fault table",
        description="Run the real graph (processes over DDS, lockstep simulator, ground-truth depth, mono depth "
                    "node for image faults) and inject every fault of depth_nodes.eval.faults: dropouts, corrupt "
                    "images, bad stamps, a 5x burst, a killed planner, a network partition. Prints fault, "
                    "expected, observed, pass; exit code 1 when a row fails.")
    p.add_argument("--only", default="", help="comma-separated fault names (default: all)")
    p.add_argument("--burst-s", type=float, default=30.0, help="simulated seconds of the 5x burst (default 30)")
    p.add_argument("--timeout", type=float, default=3600.0, help="wall-clock limit of the run (s)")
    p.add_argument("--out", default="", help="also write faults.json and faults.md into this directory")
    add_json_flag(p)
    p.set_defaults(func=_cmd_faults)
