"""The `depth-nodes` entry point: fast to start, every eval/bench command speaks JSON."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

from depth_nodes.cli import build_parser

HEAVY = ("torch", "open3d", "rclpy", "cv2", "scipy", "rosbags", "matplotlib", "onnxruntime", "skimage")


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_building_the_parser_imports_no_heavy_module():
    code = ("import sys; from depth_nodes.cli import build_parser; build_parser(); "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.strip().replace("'", '"')) == []


def test_every_eval_and_bench_command_accepts_json():
    top = _subparsers(build_parser())
    assert {"sim", "train", "export", "eval", "bench", "launch", "demo"} <= set(top)
    missing = []
    for group in ("eval", "bench"):
        commands = _subparsers(top[group])
        assert commands, f"no {group} subcommands registered"
        for name, sub in commands.items():
            if not any("--json" in a.option_strings for a in sub._actions):
                missing.append(f"{group} {name}")
    assert not missing, f"commands without --json: {missing}"


def test_unknown_command_exits_nonzero_with_usage():
    res = subprocess.run([sys.executable, "-m", "depth_nodes.cli", "no-such-command"], capture_output=True, text=True)
    assert res.returncode != 0 and "usage" in res.stderr.lower()


def test_value_errors_become_one_clear_line_and_exit_2(tmp_path):
    res = subprocess.run([sys.executable, "-m", "depth_nodes.cli", "eval", "bag-info", str(tmp_path / "nope")],
                         capture_output=True, text=True)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr and "nope" in res.stderr
