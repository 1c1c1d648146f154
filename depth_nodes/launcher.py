"""`depth-nodes launch mav_nav [arg:=value ...]`: the launch file's graph without `launch`.

Starts every node of ``depth_nodes.graph.build_graph`` as its own process with
the same parameters and remappings the ROS 2 launch file uses, forwards SIGINT /
SIGTERM to them, and shuts all of them down when one exits or on a signal
(SIGINT, then SIGTERM, then SIGKILL after grace periods).
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from depth_nodes import graph

log = logging.getLogger("depth_nodes.launch")


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen | None = None


def node_command(spec: graph.NodeSpec, config: Path, namespace: str = "") -> list[str]:
    """argv that runs one node of the graph in this Python environment."""
    return [sys.executable, "-m", f"depth_nodes.ros.{spec.executable}", *graph.ros_args(spec, config, namespace)]


class ProcessGroup:
    """Start children, wait until one exits or a signal arrives, stop all of them."""

    def __init__(self, children: list[Child], env: dict | None = None,
                 sigint_grace_s: float = 5.0, sigterm_grace_s: float = 3.0):
        self.children = children
        self.env = env
        self.sigint_grace_s = sigint_grace_s
        self.sigterm_grace_s = sigterm_grace_s
        self._stop_requested = False

    def start(self, names: Iterable[str] | None = None) -> None:
        """Start the children not started yet (only those in ``names`` when given)."""
        for c in self.children:
            if c.proc is not None or (names is not None and c.name not in names):
                continue
            log.info("starting %s: %s", c.name, " ".join(c.argv))
            c.proc = subprocess.Popen(c.argv, env=self.env, start_new_session=True)

    def request_stop(self, *_args) -> None:
        self._stop_requested = True

    def wait(self, timeout_s: float | None = None, poll_s: float = 0.05) -> str:
        """Block until a child exits ('child_exit'), a stop is requested ('signal') or timeout."""
        t0 = time.monotonic()
        while True:
            if self._stop_requested:
                return "signal"
            for c in self.children:
                if c.proc is not None and c.proc.poll() is not None:
                    log.warning("%s exited with code %s; shutting down the graph", c.name, c.proc.returncode)
                    return "child_exit"
            if timeout_s is not None and time.monotonic() - t0 > timeout_s:
                return "timeout"
            time.sleep(poll_s)

    def _alive(self, names: Iterable[str] | None = None) -> list[Child]:
        return [c for c in self.children if c.proc is not None and c.proc.poll() is None
                and (names is None or c.name in names)]

    def _signal_all(self, sig: int, names: Iterable[str] | None = None) -> None:
        for c in self._alive(names):
            try:
                os.killpg(c.proc.pid, sig)
            except ProcessLookupError:
                pass

    def _wait_all(self, grace_s: float, names: Iterable[str] | None = None) -> bool:
        deadline = time.monotonic() + grace_s
        while self._alive(names) and time.monotonic() < deadline:
            time.sleep(0.05)
        return not self._alive(names)

    def stop(self, names: Iterable[str] | None = None) -> dict[str, int | None]:
        """SIGINT, then SIGTERM, then SIGKILL (to the children in ``names``, default all);
        returns each child's exit code (None: not started or still running)."""
        names = None if names is None else set(names)
        for sig, grace in ((signal.SIGINT, self.sigint_grace_s), (signal.SIGTERM, self.sigterm_grace_s),
                           (signal.SIGKILL, 2.0)):
            if not self._alive(names):
                break
            self._signal_all(sig, names)
            self._wait_all(grace, names)
        return {c.name: (c.proc.returncode if c.proc else None) for c in self.children}


def parse_assignments(items: list[str]) -> dict[str, str]:
    """['mode:=stereo', 'rviz:=true'] -> {'mode': 'stereo', 'rviz': 'true'}."""
    out = {}
    for item in items:
        if ":=" not in item:
            raise ValueError(f"launch arguments look like name:=value, got {item!r}")
        key, value = item.split(":=", 1)
        out[key.strip()] = value.strip()
    return out


def write_config(out: Path, overrides: dict[str, dict], base: Path | None = None) -> Path:
    """Copy of the parameter file ``base`` (default config/mav_nav.yaml) with ``{node: {param: value}}``
    overrides, written to ``out`` (for ``config:=out``); unknown node or parameter names are errors."""
    import yaml

    base = base or graph.default_config_path()
    cfg = yaml.safe_load(base.read_text())
    for node, params in overrides.items():
        known = cfg.get(node, {}).get("ros__parameters")
        if known is None:
            raise ValueError(f"node {node!r} is not in {base}; known: {sorted(cfg)}")
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ValueError(f"{node} has no parameters {unknown} in {base}")
        known.update(params)
    out.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return out


def build_children(overrides: dict[str, str]) -> tuple[list[Child], dict[str, str]]:
    args = graph.parse_launch_args(overrides)
    config = Path(args["config"]) if args["config"] else graph.default_config_path()
    if not config.is_file():
        raise FileNotFoundError(f"parameter file {config} does not exist")
    children = [Child(s.name, node_command(s, config, args["namespace"])) for s in graph.build_graph(args)]
    return children, args


def cmd_launch(args) -> int:
    if args.file != "mav_nav":
        raise ValueError(f"unknown launch description {args.file!r}; available: mav_nav")
    children, largs = build_children(parse_assignments(args.assignments))
    if largs["rviz"] == "true":
        log.warning("rviz:=true needs a ROS 2 install (rviz2); use `ros2 launch depth_nodes mav_nav.launch.py`")
    if args.dry_run:
        for c in children:
            print(" ".join(c.argv))
        return 0
    group = ProcessGroup(children)
    old = {s: signal.signal(s, group.request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        group.start()
        reason = group.wait(timeout_s=args.duration)
        first_exit = {c.name: c.proc.returncode for c in children if c.proc is not None and c.proc.poll() is not None}
        codes = group.stop()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    log.info("graph stopped (%s): %s", reason, codes)
    return launch_exit_code(reason, first_exit)


def launch_exit_code(reason: str, first_exit: dict[str, int | None]) -> int:
    """Exit status of `depth-nodes launch`: 0 after a signal, the time limit or a bag played to its
    end (bag_player exits 0 at the end of the bag, like ``ros2 bag play``); 1 when a node died."""
    if reason == "child_exit" and first_exit == {"bag_player": 0}:
        log.info("the bag has been played to its end")
        return 0
    return 0 if reason in ("signal", "timeout") else 1


def register(groups) -> None:
    p = groups["root"].add_parser(
        "launch", help="start the node graph as processes (same graph as launch/mav_nav.launch.py)",
        description=__doc__.splitlines()[0])
    p.add_argument("file", help="launch description name (mav_nav)")
    p.add_argument("assignments", nargs="*", metavar="name:=value",
                   help="launch arguments: " + ", ".join(f"{k} (default {v[0]!r})" for k, v in graph.LAUNCH_ARGS.items()))
    p.add_argument("--dry-run", action="store_true", help="print the node commands and exit")
    p.add_argument("--duration", type=float, default=None, help="stop the graph after this many seconds")
    p.set_defaults(func=cmd_launch)
