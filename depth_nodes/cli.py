"""depth-nodes: simulator, training, export, evaluation, benchmarks, launch and demo of depth_nodes.

Subcommands live next to the code they drive. Each module listed in
``COMMAND_MODULES`` defines ``register(groups)`` where ``groups`` maps a group
name (``sim``, ``train``, ``export``, ``eval``, ``bench``) to an argparse
sub-parser collection, and ``groups["root"]`` is the top level (for ``launch``,
``demo`` ...). A registered parser sets ``func=callable(args) -> int``.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

COMMAND_MODULES = (
    "depth_nodes.ros.commands",
    "depth_nodes.sim.commands",
    "depth_nodes.launcher",
    "depth_nodes.planning.commands",
    "depth_nodes.mapping.commands",
    "depth_nodes.eval.commands",
    "depth_nodes.depth.commands",
    "depth_nodes.ros.fault_commands",
)

GROUPS = {
    "sim": "simulator: record bags, make datasets, preview worlds",
    "train": "train depth networks",
    "export": "export networks (ONNX, TensorRT)",
    "eval": "evaluation (every eval subcommand takes --json)",
    "bench": "benchmarks (every bench subcommand takes --json)",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="depth-nodes", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    root = parser.add_subparsers(dest="command", metavar="COMMAND")
    groups = {"root": root}
    for name, help_text in GROUPS.items():
        p = root.add_parser(name, help=help_text, description=help_text)
        groups[name] = p.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
        p.set_defaults(func=lambda _a, _p=p: (_p.print_help(sys.stderr), 2)[1])
    for mod_name in COMMAND_MODULES:
        importlib.import_module(mod_name).register(groups)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="[%(levelname)s] %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        logging.getLogger("depth-nodes").error("%s", exc)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
