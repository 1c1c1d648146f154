"""Fault-injection harness (issue #9): the real graph, a simulated flight, every fault of the table.

Starts as separate processes (depth_nodes.launcher, real DDS) the simulator in
lockstep with its sensor topics remapped to ``sim_raw/...``, the
:mod:`~depth_nodes.ros.fault_relay` that republishes them with the scheduled
faults, the mapper+planner process fed from ``ground_truth/depth`` (as
``depth-nodes launch mav_nav depth_source:=gt``) and, when an image or radar
fault is selected, the mono depth node. A :class:`FaultMonitor` in this process
records /clock, planner/status, map/points sizes and diagnostics; every child's
RSS is sampled with psutil; rejection log lines are read from the ROS log files.
The harness itself kills and restarts the mapper+planner process and cuts the
network between two ``ip netns`` hosts. Checks: :mod:`depth_nodes.eval.fault_checks`.
"""
from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import psutil

from depth_nodes import graph
from depth_nodes.cliutil import run_info
from depth_nodes.eval import fault_checks as C
from depth_nodes.eval.faults import CAMERA_TOPICS, IMAGE_TOPICS, SENSOR_TOPICS, Fault, lay_out, schedule_to_json
from depth_nodes.eval.netns import Partition, partition_unavailable_reason
from depth_nodes.launcher import Child, ProcessGroup, node_command, write_config
from depth_nodes.sim.stepper import T0_NS

log = logging.getLogger(__name__)

#: A small sparse forest in which the gt-depth planner reaches the goal (test_ros_graph_integration).
WORLD = {"world": "forest", "density": "sparse", "extent": "30x14", "seed": "7"}
#: Longest wall wait (s) for every node's diagnostics to be refreshed after a fault.
FRESH_DIAGNOSTICS_TIMEOUT_S = 5.0
#: Simulated seconds of normal flight before the first fault, and after each fault.
WARMUP_S, GAP_S = 3.0, 2.5
#: Burst length of `depth-nodes eval faults` (issue: 30 s) and its RSS/recovery limits.
BURST_S, BURST_RSS_LIMIT_MB, BURST_RECOVERY_LIMIT_S = 30.0, 100.0, 1.0
#: Simulated seconds of normal input after the burst (long enough to measure a slow recovery).
BURST_GAP_S = 6.0
STARTUP_TIMEOUT_S = 120.0
#: Planner timeouts of config/mav_nav.yaml (primitive_planner_node).
DEPTH_TIMEOUT_S, ODOM_TIMEOUT_S = 0.3, 0.2
PLANNER, MAPPER, MONO, SIM, RELAY = ("/primitive_planner_node", "/tsdf_mapper_node", "/mono_depth_node",
                                     "/sim_node", "/fault_relay")
_LOG_LINE = re.compile(r"\[(\w+)\] \[(\d+\.\d+)\] \[([^\]]+)\]: (.*)")
_REJECTED = re.compile(r"rejected message on '([^']+)': (.*)")


@dataclass
class Recording:
    """What one run recorded (simulated seconds relative to the simulation start unless wall)."""

    statuses: list[dict] = field(default_factory=list)
    snapshots: dict[tuple[str, str], dict] = field(default_factory=dict)   # (fault, before|after) -> diagnostics
    deaths: list[tuple[str, float, int]] = field(default_factory=list)     # (child, sim t, exit code)
    rss: list[tuple[float, float, float]] = field(default_factory=list)    # (sim t, wall, total MB)
    events: dict[str, str] = field(default_factory=dict)                   # fault -> harness-side note
    harness_at: dict[str, float] = field(default_factory=dict)             # fault -> sim t of the kill / cut
    after_wall: dict[str, float] = field(default_factory=dict)             # fault -> wall of the after snapshot


def _rel(stamp_s: float) -> float:
    return stamp_s - T0_NS * 1e-9


def make_monitor(context):
    """GraphMonitor plus /clock (sim time vs wall) and map/points sizes."""
    from rosgraph_msgs.msg import Clock

    from depth_nodes.codec import stamp_to_ns
    from depth_nodes.ros.clock import CLOCK_QOS, CLOCK_TOPIC
    from depth_nodes.ros.graph_monitor import GraphMonitor

    class FaultMonitor(GraphMonitor):
        def __init__(self, **kwargs):
            self.map_sizes: list[tuple[float, int]] = []
            self.sim_wall: list[tuple[float, float]] = []
            super().__init__(depth_topic="ground_truth/depth", **kwargs)
            self.create_subscription(Clock, CLOCK_TOPIC, self._on_clock, CLOCK_QOS)

        def _on_clock(self, msg) -> None:
            self.sim_wall.append((_rel(stamp_to_ns(msg.clock) * 1e-9), time.monotonic()))

        def sim_t(self) -> float:
            return self.sim_wall[-1][0] if self.sim_wall else float("-inf")

        def _recorder(self, topic: str):
            record = super()._recorder(topic)
            if topic != "map/points":
                return record

            def record_size(msg, info) -> None:
                record(msg, info)
                self.map_sizes.append((_rel(stamp_to_ns(msg.header.stamp) * 1e-9), msg.width * msg.height))
            return record_size

    return FaultMonitor(context=context)


def build_children(faults: list[Fault], tmp: Path, with_mono: bool, netns: Partition | None) -> list[Child]:
    """sim_node (sensors remapped to sim_raw/), fault_relay, mapper+planner (gt depth), optional mono node."""
    sim_params = {"image_width": 160, "image_height": 120, "publish_stereo": False, "publish_radar": with_mono,
                  "on_end": "hover", "max_duration_s": 0.0, "lockstep_timeout_s": 1.0}
    config = write_config(tmp / "params.yaml", {
        "sim_node": sim_params,
        "tsdf_mapper_node": {"map_file": str(tmp / "map.npz"), "map_publish_period_s": 0.5},
        "mono_depth_node": {"threads": 1, "publish_points": False},
    })
    args = graph.parse_launch_args({**WORLD, "depth_source": "gt", "config": str(config)})
    specs = graph.build_graph(args)
    raw = tuple((t, f"sim_raw/{t}") for t in SENSOR_TOPICS)
    specs = [replace(s, remappings=s.remappings + raw) if s.executable == "sim_node" else s for s in specs]
    relay_params = tmp / "relay.yaml"
    import yaml

    relay_params.write_text(yaml.safe_dump({"fault_relay": {"ros__parameters": {
        "schedule": schedule_to_json(faults, T0_NS * 1e-9), "use_sim_time": True}}}))
    specs.append(graph.NodeSpec("fault_relay", "fault_relay"))
    if with_mono:
        specs.append(graph.NodeSpec("mono_depth_node", "mono_depth_node", {"use_sim_time": True}))
    children = []
    for s in specs:
        argv = node_command(s, config)
        if s.executable == "fault_relay":
            argv += ["--params-file", str(relay_params)]
        if netns is not None and s.executable == "primitive_planner_node":
            argv = netns.exec_prefix() + argv
        children.append(Child(s.name, argv))
    return children


class FaultHarness:
    """One graph run with ``faults`` laid out one after another (see module doc)."""

    def __init__(self, faults: list[Fault], burst_s: float = BURST_S, timeout_s: float = 1800.0,
                 progress: bool = True, gap_s: float = GAP_S):
        self.gap_s = gap_s
        self.gaps = {"burst_5x": max(gap_s, BURST_GAP_S)}
        self.faults = lay_out(faults, WARMUP_S, gap_s, {"burst_5x": burst_s}, self.gaps)
        self.timeout_s = timeout_s
        self.progress = progress
        self.rec = Recording()
        names = {f.name for f in faults}
        self.with_mono = any(set(f.topics) & {"camera/image_raw", "radar/points"} for f in faults)
        self.partition_skip = partition_unavailable_reason() if "network_partition" in names else None

    # ------------------------------------------------------------------ run
    def run(self) -> dict:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from tqdm import tqdm

        with tempfile.TemporaryDirectory(prefix="depth_nodes_faults_") as tmp_name:
            tmp = Path(tmp_name)
            netns = None
            if any(f.action == "partition" for f in self.faults) and self.partition_skip is None:
                netns = Partition.create()
            env = dict(os.environ, OMP_NUM_THREADS="1", ROS_LOG_DIR=str(tmp / "ros_log"))
            env.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
            if netns is not None:
                env.update(netns.dds_env())
            else:
                env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
            saved_env = {k: os.environ.get(k) for k in env}
            os.environ.update(env)   # this process's own DDS participant
            self.children = build_children(self.faults, tmp, self.with_mono, netns)
            self.group = ProcessGroup(self.children, env=env, sigint_grace_s=5.0, sigterm_grace_s=2.0)
            self.env = env
            context = rclpy.Context()
            rclpy.init(context=context)
            self.monitor = make_monitor(context)
            self.executor = SingleThreadedExecutor(context=context)
            self.executor.add_node(self.monitor)
            t_wall0 = time.monotonic()
            try:
                self.group.start()
                self._wait(lambda: self.monitor.log("planner/trajectory").count > 0 and self.monitor.sim_t() > 0,
                           STARTUP_TIMEOUT_S, "the graph to plan")
                end = self.faults[-1].end_s + self._gap(self.faults[-1])
                with tqdm(total=len(self.faults), desc="faults", unit="fault", leave=False,
                          disable=not self.progress) as bar:
                    for f in self.faults:
                        self._run_fault(f, netns)
                        bar.update(1)
                self._spin_until_sim(end)
                self._spin(1.5)
            finally:
                self.group.stop()
                self.executor.shutdown()
                self.monitor.destroy_node()
                rclpy.shutdown(context=context)
                if netns is not None:
                    netns.destroy()
                for k, v in saved_env.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
            wall_s = time.monotonic() - t_wall0
            logs = read_rejection_logs(tmp / "ros_log")
            loaded = any("loaded map" in line for line in read_log_messages(tmp / "ros_log"))
        return self._table(logs, loaded, wall_s)

    def _gap(self, f: Fault) -> float:
        """Simulated seconds of normal input after ``f``."""
        return self.gaps.get(f.name, self.gap_s)

    # ------------------------------------------------------------ spinning
    def _spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self._step()

    def _step(self) -> None:
        self.executor.spin_once(timeout_sec=0.02)
        now = time.monotonic()
        if not self.rec.rss or now - self.rec.rss[-1][1] >= 0.5:
            self.rec.rss.append((self.monitor.sim_t(), now, self._total_rss_mb()))
        for c in self.children:
            if c.proc is not None and c.proc.poll() is not None and not getattr(c, "reported", False):
                c.reported = True
                self.rec.deaths.append((c.name, self.monitor.sim_t(), c.proc.returncode))
                log.warning("%s exited with code %s at sim t=%.2f", c.name, c.proc.returncode, self.monitor.sim_t())

    def _wait(self, predicate, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting for {what}")
            self._step()

    def _spin_while(self, busy, timeout_s: float) -> None:
        """Spin while ``busy()`` holds, at most ``timeout_s`` (unlike :meth:`_wait`, running out is no error)."""
        deadline = time.monotonic() + timeout_s
        while busy() and time.monotonic() < deadline:
            self._step()

    def _await_fresh_diagnostics(self, since_wall: float, timeout_s: float = FRESH_DIAGNOSTICS_TIMEOUT_S) -> None:
        """Spin until every node has published diagnostics after ``since_wall`` (monotonic s), so that the
        snapshot counts all of a fault; a busy node's periodic diagnostics can lag its callbacks. A node
        that stays silent (e.g. killed) is waited for at most ``timeout_s``."""
        self._spin_while(lambda: any(t <= since_wall for t in self.monitor.diagnostics_wall.values()), timeout_s)

    def _await_rejection_counts(self, f: Fault, before: dict, timeout_s: float = FRESH_DIAGNOSTICS_TIMEOUT_S) -> None:
        """After a corrupt/restamp fault, spin until every consumer expected to reject it reports a
        rejection (or ``timeout_s`` passes): on a loaded machine a node can publish fresh diagnostics
        while the faulty messages still wait in its queue, so a snapshot taken then misses them."""
        expected = self._expected_rejections(f)
        self._spin_while(lambda: C.counters_not_risen(before, self.monitor.diagnostics, expected), timeout_s)

    def _spin_until_sim(self, t_s: float) -> None:
        self._wait(lambda: self.monitor.sim_t() >= t_s, self.timeout_s, f"simulated time {t_s:.1f} s")

    def _total_rss_mb(self) -> float:
        total = 0
        for c in self.children:
            if c.proc is None or c.proc.poll() is not None:
                continue
            try:
                procs = [psutil.Process(c.proc.pid)]
                procs += procs[0].children(recursive=True)
                total += sum(p.memory_info().rss for p in procs)
            except psutil.Error:
                continue
        return total / 1e6

    def _snapshot(self) -> dict:
        return {k: dict(v) for k, v in self.monitor.diagnostics.items()}

    # -------------------------------------------------------------- faults
    def _run_fault(self, f: Fault, netns: Partition | None) -> None:
        self._spin_until_sim(f.start_s - 0.3)
        self.rec.snapshots[(f.name, "before")] = self._snapshot()
        self._spin_until_sim(f.start_s)
        if f.action == "kill_restart":
            self._kill_restart(f)
        elif f.action == "partition":
            if netns is None:
                self.rec.events[f.name] = f"skipped: {self.partition_skip}"
            else:
                self.rec.harness_at[f.name] = self.monitor.sim_t()
                netns.cut()
                self._spin_until_sim(f.end_s)
                netns.heal()
        self._spin_until_sim(f.end_s)
        ended_wall = time.monotonic()
        self._spin_until_sim(f.end_s + self._gap(f) - 0.2)
        self._await_fresh_diagnostics(ended_wall)
        self._await_rejection_counts(f, self.rec.snapshots[(f.name, "before")])
        self.rec.snapshots[(f.name, "after")] = self._snapshot()
        self.rec.after_wall[f.name] = time.monotonic()
        self.rec.statuses = [s for _, s in self.monitor.plan_status]

    def _kill_restart(self, f: Fault) -> None:
        from std_srvs.srv import Trigger

        client = self.monitor.create_client(Trigger, f"{MAPPER}/save_map")
        self._wait(lambda: client.service_is_ready(), 30.0, "the save_map service")
        future = client.call_async(Trigger.Request())
        self._wait(future.done, 30.0, "save_map")
        saved = future.result().message
        child = next(c for c in self.children if c.name == "primitive_planner_node")
        os.killpg(child.proc.pid, signal.SIGKILL)
        child.proc.wait(timeout=10.0)
        killed_at = self.monitor.sim_t()
        child.argv = child.argv + ["-p", "load_map_on_start:=true"]
        child.proc = subprocess.Popen(child.argv, env=self.env, start_new_session=True)
        self.rec.harness_at[f.name] = killed_at
        self.rec.events[f.name] = f"{saved}; SIGKILL at t={killed_at:.2f} s"
        self.monitor.destroy_client(client)

    # --------------------------------------------------------------- table
    def _table(self, logs: list[tuple[float, str, str, str, str]], loaded: bool, wall_s: float) -> dict:
        rows = [self._evaluate(f, logs, loaded) for f in self.faults]
        by_key: dict[tuple[str, str], list[float]] = {}
        for wall, node, topic, _, process in logs:  # a restarted process starts its own throttle
            by_key.setdefault((f"{node} ({process})", topic), []).append(wall)
        ok, text = C.max_log_rate_ok(by_key)
        rows.append({"fault": "rejection_log_rate", "expected": "each rejected input logged at most once per "
                     "second per topic", "observed": f"{text}; {len(logs)} rejection lines", "pass": ok})
        burst = self._burst_figures()
        sim_diag = self.monitor.diagnostics.get(SIM, {})
        return {"rows": rows, "all_pass": all(r["pass"] for r in rows), **burst, "wall_s": wall_s,
                "sim_s": self.monitor.sim_t(), "deaths": self.rec.deaths,
                "lockstep_timeouts": int(sim_diag.get("lockstep_timeouts", "0"))}

    def _burst_figures(self) -> dict:
        f = next((f for f in self.faults if f.action == "burst"), None)
        if f is None:
            return {"burst_rss_growth_mb": None, "burst_recovery_s": None}
        before = [mb for t, _, mb in self.rec.rss if f.start_s - 2.0 <= t < f.start_s]
        during = [mb for t, _, mb in self.rec.rss if f.start_s <= t < f.end_s + 1.0]
        growth = max(during) - float(np.median(before)) if before and during else float("nan")
        samples = self._latencies()
        baseline, recovery = C.recovery_time_s(samples, f.start_s, f.end_s, f.end_s + self._gap(f))
        after = [s.latency_ms for s in samples if f.end_s <= s.stamp_s < f.end_s + self._gap(f)]
        return {"burst_rss_growth_mb": growth, "burst_recovery_s": recovery, "burst_duration_s": f.duration_s,
                "latency_ms_median_before_burst": baseline,
                "latency_ms_median_after_burst": float(np.median(after)) if after else float("nan")}

    def _latencies(self) -> list[C.LatencySample]:
        """Camera frame (relayed camera_info) publish -> first trajectory planned on it published."""
        from depth_nodes.ros.graph_monitor import stamp_key

        cam = self.monitor.log("camera/camera_info")
        camera = dict(zip(map(stamp_key, cam.stamp_s), cam.published_s))
        traj = self.monitor.log("planner/trajectory")
        traj_pub = dict(zip(map(stamp_key, traj.stamp_s), traj.published_s))
        out, seen = [], set()
        for s in self.rec.statuses:
            d = s.get("depth_stamp")
            key = None if d is None else stamp_key(d)
            t = traj_pub.get(stamp_key(s["stamp"]))
            if key is None or key in seen or key not in camera or t is None:
                continue
            seen.add(key)
            out.append(C.LatencySample(_rel(d), t, (t - camera[key]) * 1e3))
        return out

    def _evaluate(self, f: Fault, logs, loaded: bool) -> dict:
        statuses = [dict(s, stamp=_rel(s["stamp"]), depth_stamp=None if s.get("depth_stamp") is None
                         else _rel(s["depth_stamp"])) for s in self.rec.statuses if s.get("stamp") is not None]
        before = self.rec.snapshots.get((f.name, "before"), {})
        after = self.rec.snapshots.get((f.name, "after"), {})
        resume_by = f.end_s + self._gap(f)
        checks: list[tuple[bool, str]] = []
        died = [d for d in self.rec.deaths if f.start_s - 0.3 <= d[1] <= resume_by and
                not (f.action == "kill_restart" and d[0] == "primitive_planner_node")]
        checks.append((not died, "no crash" if not died else f"died: {died}"))
        wall = (C.sim_to_wall(self.monitor.sim_wall, f.start_s), C.sim_to_wall(self.monitor.sim_wall, resume_by))
        if f.action == "drop" and set(f.topics) & set(CAMERA_TOPICS):
            last = C.last_before([s["depth_stamp"] for s in statuses if s["depth_stamp"] is not None], f.start_s)
            checks.append(self._brake(statuses, last, DEPTH_TIMEOUT_S, f, resume_by))
        elif f.action == "drop" and "odom" in f.topics:
            last = C.last_before([_rel(t) for t in self.monitor.log("odom").stamp_s], f.start_s)
            checks.append(self._brake(statuses, last, ODOM_TIMEOUT_S, f, resume_by))
        elif f.action == "drop":  # radar
            if self.with_mono:
                n = C.counter_delta(before, after, MONO, "frames_without_radar")
                done = C.counter_delta(before, after, MONO, "frames_processed")
                checks.append((n > 0 and done > 0, f"mono node: {done} frames estimated, {n} without radar"))
        elif f.action in ("corrupt", "restamp"):
            checks += self._rejections(f, before, after, logs, wall)
            checks.append(C.map_unchanged(self.monitor.map_sizes, f.start_s, f.end_s))
            if f.action == "restamp":
                last_odom = C.last_before([_rel(t) for t in self.monitor.log("odom").stamp_s], f.start_s)
                last_depth = C.last_before([s["depth_stamp"] for s in statuses if s["depth_stamp"] is not None],
                                           f.start_s)
                stale = min(last_odom + ODOM_TIMEOUT_S, last_depth + DEPTH_TIMEOUT_S) \
                    if last_odom is not None and last_depth is not None else None
                checks.append(self._brake(statuses, stale, 0.0, f, resume_by))
        elif f.action == "burst":
            b = self._burst_figures()
            g, r = b["burst_rss_growth_mb"], b["burst_recovery_s"]
            checks.append((g <= BURST_RSS_LIMIT_MB and r <= BURST_RECOVERY_LIMIT_S,
                           f"RSS +{g:.0f} MB over {f.duration_s:.0f} s, latency normal {r:.2f} s after"))
        elif f.action == "kill_restart":
            t = self.rec.harness_at.get(f.name)
            resumed = None if t is None else C.resumed_after(statuses, t, resume_by)
            size_after = next((n for s, n in sorted(self.monitor.map_sizes) if t is not None and s > t), 0)
            checks.append((loaded and resumed is not None and size_after > 0,
                           f"{self.rec.events.get(f.name, '')}; map reloaded: {loaded} ({size_after} points); "
                           + (f"planning again at t={resumed:.2f} s" if resumed is not None else "did not resume")))
        elif f.action == "partition":
            note = self.rec.events.get(f.name, "")
            if note.startswith("skipped"):
                return {"fault": f.name, "expected": f.expected, "observed": note, "pass": True, "skipped": True}
            # statuses planned before the cut may carry stamps up to one cycle past what this process saw
            cut = self.rec.harness_at.get(f.name, f.start_s)
            checks.append(C.brakes_first_after(statuses, cut + 0.25, f.end_s, resume_by))
        return {"fault": f.name, "expected": f.expected, "observed": "; ".join(t for _, t in checks),
                "pass": all(ok for ok, _ in checks), "start_s": round(f.start_s, 2), "duration_s": f.duration_s}

    @staticmethod
    def _brake(statuses, last_good: float | None, timeout_s: float, f: Fault, resume_by: float,
               deadline_s: float = C.BRAKE_DEADLINE_S) -> tuple[bool, str]:
        if last_good is None:
            return False, "no input seen before the fault"
        return C.brake_and_resume(statuses, last_good + timeout_s, f.end_s, resume_by, deadline_s)

    def _expected_rejections(self, f: Fault) -> list[tuple[str, str]]:
        """(node, topic) whose rejection counter a corrupt/restamp fault must raise; empty otherwise."""
        if f.action not in ("corrupt", "restamp"):
            return []
        expect = []
        if "ground_truth/depth" in f.topics:
            expect.append((MAPPER, "depth/image"))
            if f.action == "restamp" or f.name not in ("depth_nan", "depth_inf", "depth_zero"):
                expect.append((PLANNER, "depth/image"))
        if "odom" in f.topics:
            expect.append((PLANNER, "odom"))
        if self.with_mono and "camera/image_raw" in f.topics and f.action == "corrupt" and \
                set(f.topics) >= set(IMAGE_TOPICS):
            expect.append((MONO, "camera/image_raw"))
        return expect

    def _rejections(self, f: Fault, before, after, logs, wall) -> list[tuple[bool, str]]:
        """Rejection counters rose on the consumers of the faulty topics and their log lines give the reason.

        A log line counts from just before the fault until the after snapshot (at least 1 s past the
        gap): a loaded node can reject, and log, the queued faulty messages that late, and the
        snapshot that counted them was taken after it did."""
        out = []
        end = max((wall[1] or float("inf")) + 1.0, self.rec.after_wall.get(f.name, float("-inf")))
        for node, topic in self._expected_rejections(f):
            n = C.counter_delta(before, after, node, f"rejected/{topic}")
            lines = [m for w, nd, tp, m, _ in logs if nd == node.strip("/") and tp == topic
                     and wall[0] is not None and wall[0] - 0.5 <= w <= end]
            reason = next((m for m in lines if re.search(f.reason, m)), None) if f.reason else \
                (lines[0] if lines else None)
            out.append((n > 0 and reason is not None,
                        f"{node.strip('/')} rejected {n} on {topic}"
                        + (f" ('{reason[:70]}')" if reason else " (no log line with the reason)")))
        return out


def read_log_messages(log_dir: Path) -> list[str]:
    """Every message of the ROS log files under ``log_dir``."""
    out = []
    for path in sorted(Path(log_dir).glob("**/*.log")):
        for line in path.read_text(errors="replace").splitlines():
            m = _LOG_LINE.match(line)
            if m:
                out.append(m.group(4))
    return out


def read_rejection_logs(log_dir: Path) -> list[tuple[float, str, str, str, str]]:
    """(wall time (monotonic seconds), node, topic, reason, process log file) of every rejection line in
    the ROS logs. The files carry system time; it is moved onto this process's monotonic clock."""
    offset = time.monotonic() - time.time()
    out = []
    for path in sorted(Path(log_dir).glob("**/*.log")):
        for line in path.read_text(errors="replace").splitlines():
            m = _LOG_LINE.match(line)
            r = _REJECTED.match(m.group(4)) if m else None
            if r:
                out.append((float(m.group(2)) + offset, m.group(3), r.group(1), r.group(2), path.name))
    return out


def run_faults(faults: list[Fault], burst_s: float = BURST_S, timeout_s: float = 1800.0,
               progress: bool = True, gap_s: float = GAP_S) -> dict:
    """Run the harness for ``faults`` and return the table (rows: fault, expected, observed, pass) with
    the burst figures (``burst_rss_growth_mb``, ``burst_recovery_s``) and run info."""
    if not (np.isfinite(burst_s) and burst_s > 0):
        raise ValueError(f"burst_s must be > 0, got {burst_s}")
    if not faults:
        raise ValueError("no faults selected")
    harness = FaultHarness(faults, burst_s, timeout_s, progress, gap_s)
    result = harness.run()
    result["run_info"] = run_info(world=WORLD, depth_source="gt", lockstep=True, image_size="160x120",
                                  mono_depth_node=harness.with_mono, warmup_s=WARMUP_S, gap_s=gap_s,
                                  device="cpu", seed=int(WORLD["seed"]), threads=1,
                                  faults=[f.name for f in faults])
    return result
