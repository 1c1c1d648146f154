"""Fly the mav_nav node graph over DDS and record it: the ROS part of `depth-nodes demo`.

:func:`fly_graph` starts every node of the graph (``depth_nodes.launcher``,
one process each) and watches it from this process with a
:class:`~depth_nodes.ros.graph_monitor.GraphMonitor` and a
:class:`~depth_nodes.ros.bag_recorder.BagRecorder` (in this process, so the
bag is finalised whatever the node processes do on shutdown). The simulator
starts last, once the planner and the depth node are subscribed, so the
recording holds the whole episode and lockstep never waits on a process that
is still starting. It returns when ``sim/status`` reports the episode's end
(goal, collision, ``max_duration_s``), a process exits, ``timeout_s`` of
wall time passes, or (with ``stall_s``) simulated time stops advancing for
``stall_s`` of wall time; the processes are then stopped (SIGINT, then SIGTERM).
A lockstep flight is the same however slowly it runs, so a generous
``timeout_s`` with a stall limit tells a slow machine from a stuck graph.
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from depth_nodes.depth.interface import STEREO_MODES

log = logging.getLogger(__name__)

#: Topics the demo records, with their types (the recorder subscribes at once, best effort).
RECORDED_TYPES = {
    "camera/image_raw": "sensor_msgs/msg/Image",
    "camera/camera_info": "sensor_msgs/msg/CameraInfo",
    "radar/points": "sensor_msgs/msg/PointCloud2",
    "depth/image": "sensor_msgs/msg/Image",
    "ground_truth/depth": "sensor_msgs/msg/Image",
    "odom": "nav_msgs/msg/Odometry",
    "ground_truth/odom": "nav_msgs/msg/Odometry",
    "planner/trajectory": "trajectory_msgs/msg/MultiDOFJointTrajectory",
    "planner/status": "std_msgs/msg/String",
    "sim/status": "std_msgs/msg/String",
    "diagnostics": "diagnostic_msgs/msg/DiagnosticArray",
}
#: Longest wait for the non-simulator processes to subscribe (s of wall time).
STARTUP_TIMEOUT_S = 120.0
#: Wall seconds a node process may take to exit on SIGINT before SIGTERM.
SIGINT_GRACE_S = 5.0
#: Wall seconds of spinning after the end, so the recorder and monitor receive the last messages.
DRAIN_S = 1.5


@dataclass
class GraphFlight:
    """What a graph flight produced, as seen from outside the processes."""

    ended: str | None                        # sim/status "ended": reached_goal | collided | max_duration | None
    sim_status: dict | None                  # newest sim/status
    stop_reason: str                         # "ended" | "timeout" | "stalled" | "child_exit"
    startup_s: float                         # wall time until the simulator was started
    flight_wall_s: float                     # wall time from the simulator's start to the end
    bag: Path | None
    exit_codes: dict[str, int | None]
    diagnostics: dict[str, dict[str, str]]   # node -> newest diagnostics key/values
    wall_rates_hz: dict[str, float]          # monitored topic -> receive rate (wall clock)
    e2e_latencies_ms: list[float]            # camera frame published -> trajectory planned on it published
    launch_args: dict[str, str] = field(default_factory=dict)
    monitor: object = None                   # the (destroyed) GraphMonitor: its topic logs and statuses
    world: object = None                     # the simulated World the launch arguments describe

    @property
    def reached_goal(self) -> bool:
        return bool(self.sim_status and self.sim_status.get("reached_goal")) and not self.collided

    @property
    def collided(self) -> bool:
        return bool(self.sim_status and self.sim_status.get("collided"))


class FlightWatch:
    """When a running flight has used up its wall time: ``timeout_s`` after ``start`` in all, or
    ``stall_s`` (None: no such limit) without the simulated time advancing (counted from ``start``
    until the simulator reports its first time)."""

    def __init__(self, timeout_s: float, stall_s: float | None = None, start: float = 0.0):
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if stall_s is not None and not stall_s > 0:
            raise ValueError(f"stall_s must be > 0 or None, got {stall_s}")
        self.timeout_s, self.stall_s, self.start = float(timeout_s), stall_s, float(start)
        self._t_sim = -math.inf
        self._advanced_at = self.start

    def check(self, now: float, t_sim: float | None) -> str | None:
        """``"timeout"``, ``"stalled"`` or None (go on), given the wall clock ``now`` and the newest
        simulated time (None before the simulator reports one)."""
        if t_sim is not None and t_sim > self._t_sim:
            self._t_sim, self._advanced_at = float(t_sim), now
        if now - self.start >= self.timeout_s:
            return "timeout"
        if self.stall_s is not None and now - self._advanced_at >= self.stall_s:
            return "stalled"
        return None


def launch_world(args: dict[str, str]):
    """The simulated world that parsed launch arguments describe (sim_node builds the same)."""
    from depth_nodes.graph import parse_extent
    from depth_nodes.sim.world import WorldSpec, build_world

    extent = parse_extent(args["extent"])
    return build_world(WorldSpec.from_params(args["world"], args["seed"], args["density"], extent))


def with_flight_ceiling(node_params: dict[str, dict] | None, start_z: float,
                        above_start_m: float | None = None) -> dict[str, dict]:
    """``node_params`` with the planner's ceiling ``above_start_m`` above the start (default
    ``CEILING_ABOVE_START_M``, as `eval flight` flies), unless they set ``max_altitude`` themselves."""
    from depth_nodes.eval.flight import CEILING_ABOVE_START_M

    above = CEILING_ABOVE_START_M if above_start_m is None else float(above_start_m)
    if not above > 0:
        raise ValueError(f"the ceiling must be above the start, got {above} m")
    params = {k: dict(v) for k, v in (node_params or {}).items()}
    planner = params.setdefault("primitive_planner_node", {})
    planner.setdefault("max_altitude", float(start_z) + above)
    return params


def recorder_parameters(output: Path, topics: list[str]) -> dict:
    """bag_recorder parameters: ``topics`` (keys of :data:`RECORDED_TYPES`) to ``output``, sim-time log times."""
    unknown = sorted(set(topics) - set(RECORDED_TYPES))
    if unknown:
        raise ValueError(f"topics {unknown} have no known type; known: {sorted(RECORDED_TYPES)}")
    return {"use_sim_time": True, "topics": ",".join(topics), "types": ",".join(RECORDED_TYPES[t] for t in topics),
            "output": str(output)}


def recorded_topics(launch_args: dict[str, str]) -> list[str]:
    """The topics worth recording for the (parsed) launch arguments."""
    topics = [t for t in RECORDED_TYPES if t not in ("radar/points", "depth/image")]
    if launch_args["depth_source"] != "gt":
        topics.append("depth/image")
    return topics


def _subscribed(monitor, node: str, topic: str) -> bool:
    return any(i.node_name == node for i in monitor.get_subscriptions_info_by_topic(f"/{topic}"))


def _readiness(args: dict[str, str]) -> list[tuple[str, str]]:
    """(node name, topic it subscribes) pairs that show each non-simulator process is up."""
    gt = args["depth_source"] == "gt"
    need = [("primitive_planner_node", "odom"), ("tsdf_mapper_node", "ground_truth/depth" if gt else "depth/image")]
    if not gt:
        need.append(("mono_depth_node" if args["mode"] == "mono" else "stereo_depth_node", "camera/camera_info"))
    return need


def fly_graph(launch_args: dict[str, str], out_dir: Path, node_params: dict[str, dict] | None = None,
              timeout_s: float = 240.0, record: bool = True, progress: bool = True,
              ceiling_m: float | None = None, stall_s: float | None = None) -> GraphFlight:
    """Run the graph for one episode (see module doc: ``timeout_s`` and ``stall_s`` are the wall-time
    limits of the flight); ``node_params`` override config/mav_nav.yaml per node, ``out_dir``
    receives params.yaml and the bag (``out_dir/bag``, replaced if present); ``ceiling_m``: the
    planner's ceiling above the start (default: the flight benchmark's)."""
    import shutil

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from tqdm import tqdm

    from depth_nodes.graph import parse_launch_args
    from depth_nodes.launcher import ProcessGroup, build_children, write_config
    from depth_nodes.ros.bag_recorder import BagRecorder
    from depth_nodes.ros.graph_monitor import GraphMonitor

    FlightWatch(timeout_s, stall_s)  # checks the limits before anything starts
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    args = parse_launch_args(launch_args)
    if args["use_sim"] != "true":
        raise ValueError("fly_graph needs the simulator (use_sim:=true)")
    world = launch_world(args)
    # the flight benchmark's ceiling: above it forest crowns end flights on estimated depth
    config = write_config(out_dir / "params.yaml", with_flight_ceiling(node_params, float(world.start[2]), ceiling_m))
    children, args = build_children({**launch_args, "config": str(config)})
    bag = out_dir / "bag" if record else None
    env = dict(os.environ)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    # this process's monitor and recorder must discover the same (local) participants as the nodes
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", env["ROS_AUTOMATIC_DISCOVERY_RANGE"])
    group = ProcessGroup(children, env=env, sigint_grace_s=SIGINT_GRACE_S, sigterm_grace_s=3.0)
    context = rclpy.Context()
    rclpy.init(context=context)
    depth_topic = "ground_truth/depth" if args["depth_source"] == "gt" else "depth/image"
    monitor = GraphMonitor(depth_topic=depth_topic, context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(monitor)
    recorder = None
    if bag is not None:
        shutil.rmtree(bag, ignore_errors=True)
        params = recorder_parameters(bag, recorded_topics(args))
        recorder = BagRecorder(context=context, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
        executor.add_node(recorder)
    others = [c.name for c in children if c.name != "sim_node"]
    t0 = time.monotonic()
    stop_reason, t_sim, t_done = "timeout", None, None
    try:
        group.start(others)
        need = _readiness(args)
        while not all(_subscribed(monitor, n, t) for n, t in need):
            if group.wait(timeout_s=0.0) != "timeout":
                raise RuntimeError("a node process exited while the graph was starting")
            if time.monotonic() - t0 > STARTUP_TIMEOUT_S:
                missing = [p for p in need if not _subscribed(monitor, *p)]
                raise RuntimeError(f"graph not up after {STARTUP_TIMEOUT_S:.0f} s: no subscription {missing}")
            executor.spin_once(timeout_sec=0.1)
        t_sim = time.monotonic()
        log.info("graph up after %.1f s; starting the simulator", t_sim - t0)
        group.start(["sim_node"])
        shown = 0.0
        watch = FlightWatch(timeout_s, stall_s, start=t_sim)
        with tqdm(desc="flight (sim time)", unit="s", disable=not progress, leave=False,
                  bar_format="{desc}: {n:.1f} s simulated, {elapsed} wall") as bar:
            while True:
                if monitor.ended():
                    stop_reason = "ended"
                    break
                if group.wait(timeout_s=0.0) != "timeout":
                    stop_reason = "child_exit"
                    break
                executor.spin_once(timeout_sec=0.05)
                t = (monitor.sim_status or {}).get("t")
                reason = watch.check(time.monotonic(), t)
                if reason is not None:
                    stop_reason = reason
                    log.warning("flight stopped: %s (simulated time %s s after %.0f s of wall time)",
                                reason, t, time.monotonic() - t_sim)
                    break
                if t is not None and t - shown >= 0.5:
                    bar.update(t - shown)
                    shown = t
        t_done = time.monotonic()
        end = t_done + DRAIN_S
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
    finally:
        t_done = t_done or time.monotonic()
        if recorder is not None:
            recorder.close()  # finalised here, whatever the node processes do on SIGINT
        codes = group.stop()
        executor.shutdown()
        monitor.destroy_node()
        if recorder is not None:
            recorder.destroy_node()
        rclpy.shutdown(context=context)
    log.info("graph stopped (%s): %s", stop_reason, codes)
    status = monitor.sim_status
    return GraphFlight(
        ended=(status or {}).get("ended"), sim_status=status, stop_reason=stop_reason,
        startup_s=(t_sim or t_done) - t0, flight_wall_s=t_done - t_sim if t_sim else 0.0, bag=bag,
        exit_codes=codes, diagnostics=dict(monitor.diagnostics),
        wall_rates_hz={k: v.wall_rate_hz() for k, v in monitor.logs.items()},
        e2e_latencies_ms=monitor.e2e_latencies_ms(), launch_args=args, monitor=monitor, world=world)


#: `depth-nodes demo --depth` -> launch arguments (and mono_depth_node mode) of the graph.
DEPTH_CHOICES = {
    "mono-radar": {"mode": "mono", "depth_source": "estimate"},
    "mono": {"mode": "mono", "depth_source": "estimate"},
    "stereo": {"mode": "stereo", "stereo_backend": "network", "depth_source": "estimate"},
    "stereo-hybrid": {"mode": "stereo", "stereo_backend": "hybrid", "depth_source": "estimate"},
    "sgbm": {"mode": "stereo", "stereo_backend": "sgbm", "depth_source": "estimate"},
    "gt": {"depth_source": "gt"},
}


def demo_node_params(depth: str, image_size: tuple[int, int], lockstep_timeout_s: float) -> dict[str, dict]:
    """Parameter overrides of the demo: camera size, only the sensors ``depth`` reads, a lockstep
    timeout for a busy CPU, and a map/points publication that rarely takes the map lock."""
    if depth not in DEPTH_CHOICES:
        raise ValueError(f"depth must be one of {sorted(DEPTH_CHOICES)}, got {depth!r}")
    params = {
        "sim_node": {"image_width": image_size[0], "image_height": image_size[1],
                     "publish_stereo": depth in STEREO_MODES, "publish_radar": depth == "mono-radar",
                     "lockstep_timeout_s": lockstep_timeout_s},
        "tsdf_mapper_node": {"map_publish_period_s": 5.0},
    }
    if depth in ("mono", "mono-radar"):
        params["mono_depth_node"] = {"mode": depth}
    return params


def flight_summary(flight: GraphFlight, rec, world) -> dict:
    """The demo's summary numbers from the live observations and the decoded bag ``rec`` (or None)."""
    import numpy as np

    from depth_nodes.eval.demo_report import stage_latencies

    status = flight.sim_status or {}
    sim_diag = flight.diagnostics.get("/sim_node", {})
    lat = flight.e2e_latencies_ms
    out = {
        "goal_reached": flight.reached_goal, "collisions": int(flight.collided),
        "end": flight.ended or f"not ended ({flight.stop_reason})",
        "flight_time_s": round(float(status.get("t", 0.0)), 2),
        "distance_to_goal_m": round(float(status.get("distance_to_goal", float("nan"))), 2),
        "lockstep_timeouts": int(sim_diag.get("lockstep_timeouts", -1)),
        "e2e_latency_ms_median": round(float(np.median(lat)), 1) if lat else None,
        "e2e_latency_ms_p90": round(float(np.percentile(lat, 90)), 1) if lat else None,
        "stage_latencies_ms": stage_latencies(flight.diagnostics),
        "startup_wall_s": round(flight.startup_s, 1), "flight_wall_s": round(flight.flight_wall_s, 1),
        "topic_rates_hz_wall": {k: round(v, 2) for k, v in flight.wall_rates_hz.items()},
        "exit_codes": flight.exit_codes, "bag": str(flight.bag) if flight.bag else None,
    }
    if rec is not None:
        seg = np.linalg.norm(np.diff(rec.path, axis=0), axis=1)
        length = float(seg.sum())
        out.update({
            "path_length_m": round(length, 2),
            "mean_speed_m_s": round(length / out["flight_time_s"], 2) if out["flight_time_s"] > 0 else 0.0,
            "min_clearance_m": round(float(np.min(world.distance(rec.path))), 3),
            "planner_statuses": rec.planner_statuses, "topic_counts": rec.topic_counts,
            "topic_rates_hz_sim": rec.topic_rates_hz})
    else:
        out.update({"planner_statuses": {}, "topic_counts": {}, "topic_rates_hz_sim": {}})
    return out


def run_graph_demo(depth: str, world_args: dict[str, str], out_dir: Path, image_size: tuple[int, int] = (160, 120),
                   timeout_s: float = 600.0, lockstep_timeout_s: float = 10.0, progress: bool = True,
                   ceiling_m: float | None = None, stall_s: float | None = 120.0) -> dict:
    """Fly the graph (``world_args``: world, density, seed, extent launch arguments), decode the bag and
    write the report to ``out_dir``; returns the summary (see :func:`flight_summary`). ``ceiling_m``:
    the planner's ceiling above the start (default: the flight benchmark's); ``timeout_s`` and
    ``stall_s``: the flight's wall-time limits (see :func:`fly_graph`)."""
    from depth_nodes.eval.demo_report import read_flight_bag, write_demo_report

    wall0 = time.monotonic()
    launch = {**DEPTH_CHOICES[depth], **world_args}
    flight = fly_graph(launch, out_dir, demo_node_params(depth, image_size, lockstep_timeout_s),
                       timeout_s=timeout_s, progress=progress, ceiling_m=ceiling_m, stall_s=stall_s)
    args, world = flight.launch_args, flight.world
    rec = None
    try:
        rec = read_flight_bag(flight.bag, "ground_truth/depth" if depth == "gt" else "depth/image")
    except (ValueError, FileNotFoundError) as exc:
        log.error("cannot read the flight's bag: %s", exc)
    summary = flight_summary(flight, rec, world)
    summary.update({"world": f"{args['world']} ({args['density']}, extent {args['extent'] or 'default'}, "
                             f"seed {args['seed']})", "depth": depth, "ceiling_above_start_m": ceiling_m,
                    "title": f"demo over DDS: {args['world']} {args['density']}, depth {depth}"})
    files = write_demo_report(out_dir, summary, rec, world, world.goal, summary["stage_latencies_ms"])
    summary["report"] = str(files["report"])
    summary["files"] = {k: str(v) for k, v in files.items()}
    summary["total_wall_s"] = round(time.monotonic() - wall0, 1)
    return summary
