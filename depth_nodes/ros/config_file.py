"""config/mav_nav.yaml from the nodes' parameter declarations (one source of truth).

``python -m depth_nodes.ros.config_file --write`` regenerates the file; the test
suite fails when the committed file differs from what the declarations say.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from depth_nodes.graph import NODE_EXECUTABLES
from depth_nodes.params import Param, with_common

HEADER = """\
# Parameters of every depth_nodes node, with their defaults.
# GENERATED from the PARAMS declared in depth_nodes/ros/<node>.py by
#   python -m depth_nodes.ros.config_file --write
# Copy this file and edit values to tune a vehicle; pass it with config:=FILE.
"""


def node_declarations(executables=NODE_EXECUTABLES) -> dict[str, tuple[Param, ...]]:
    """Node name -> its parameters (COMMON included), for every node module present."""
    out: dict[str, tuple[Param, ...]] = {}
    for exe in executables:
        try:
            mod = importlib.import_module(f"depth_nodes.ros.{exe}")
        except ModuleNotFoundError as exc:
            if exc.name == f"depth_nodes.ros.{exe}":
                continue  # node not written yet
            raise
        for name, params in getattr(mod, "NODE_PARAMS", {mod.NODE_NAME: mod.PARAMS}).items():
            out[name] = with_common(params)
    return out


def _yaml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_yaml_value(x) for x in v) + "]"
    return str(v)


def render(decls: dict[str, tuple[Param, ...]]) -> str:
    lines = [HEADER]
    for node, params in decls.items():
        lines.append(f"{node}:\n  ros__parameters:")
        for p in params:
            rng = ""
            if p.min is not None or p.max is not None:
                rng = f" [{p.min}, {p.max}]"
            elif p.choices:
                rng = f" ({' | '.join(p.choices)})"
            lines.append(f"    # {p.description}{rng}")
            lines.append(f"    {p.name}: {_yaml_value(p.default)}")
        lines.append("")
    return "\n".join(lines)


def config_path() -> Path:
    return Path(__file__).resolve().parents[2] / "config" / "mav_nav.yaml"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="write config/mav_nav.yaml (default: print)")
    args = ap.parse_args(argv)
    text = render(node_declarations())
    if args.write:
        config_path().write_text(text)
        print(f"wrote {config_path()}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
