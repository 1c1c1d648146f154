"""`depth-nodes bench pipeline`: end-to-end latency of the running multi-process graph.

Launches the mav_nav graph (depth_nodes.launcher, separate processes over DDS)
fed at 10 Hz with 320x240 camera frames from one of two sources:

- ``bag`` (default): a simulated flight recorded beforehand (``depth-nodes sim
  record``, slow enough that the route lasts the whole run) and replayed in real
  time by ``bag_player``, as a camera driver or ``ros2 bag play`` would feed a
  vehicle's computer; the CPU then runs only the pipeline;
- ``sim``: the live simulator in real time (no lockstep, the vehicle hovering on
  after arrival or collision so the input never stops), which renders on the same
  CPU as the pipeline.

The bench watches it with a :class:`~depth_nodes.ros.graph_monitor.GraphMonitor` for
``duration_s`` after a warm-up, and reports camera frame -> trajectory latency
(wall time, matched by sim stamps), output rates, dropped frames and whether
latency grew over the run (a queue building up).
"""
from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from depth_nodes.cliutil import run_info
from depth_nodes.eval.demo_report import stage_latencies

log = logging.getLogger(__name__)

#: --mode -> launch arguments of the graph.
MODES = {
    "mono-radar": {"mode": "mono", "depth_source": "estimate"},
    "sgbm": {"mode": "stereo", "stereo_backend": "sgbm", "depth_source": "estimate"},
    "gt": {"depth_source": "gt"},
}
#: Longest wait for the first trajectory after the processes start (s).
STARTUP_TIMEOUT_S = 90.0
#: Input sources.
SOURCES = ("bag", "sim")
#: Bag topics each mode consumes (odometry and the latched rig/world description always).
BAG_TOPICS = {
    "mono-radar": ("camera/image_raw", "camera/camera_info", "radar/points"),
    "sgbm": ("stereo/left/image_rect", "stereo/left/camera_info", "stereo/right/image_rect",
             "stereo/right/camera_info", "camera/camera_info"),
    "gt": ("ground_truth/depth", "camera/camera_info"),
}
#: Recorded seconds beyond warm-up + measurement (the nodes' start-up before the bag plays).
BAG_MARGIN_S = 15.0
#: Slowest and fastest cruise speed of the recorded route (m/s).
BAG_SPEED_RANGE = (0.5, 2.0)


def best_available_mode() -> str:
    """mono-radar when its packaged weights exist, else sgbm (classical stereo, no weights)."""
    from depth_nodes.depth.model_io import default_weights

    return "mono-radar" if default_weights("mono_radar").is_file() else "sgbm"


def bench_sim_params(mode: str) -> dict:
    """sim_node overrides: hover on after the episode (the input never stops) and render only
    the sensors ``mode`` consumes (the simulator shares the CPU with the pipeline)."""
    return {"on_end": "hover", "max_duration_s": 0.0, "publish_stereo": mode == "sgbm",
            "publish_radar": mode == "mono-radar", "publish_gt": mode == "gt"}


def _percentiles(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    return float(np.median(values)), float(np.percentile(values, 90))


def _int_diag(diagnostics: dict[str, dict[str, str]], node: str, key: str) -> int | None:
    value = diagnostics.get(node, {}).get(key)
    return int(value) if value is not None else None


def record_input_bag(out: Path, world: str, density: str, seed: int, seconds: float) -> dict:
    """Record ``seconds`` of the scripted flight through ``world`` into the bag ``out``, at the
    cruise speed that makes the route last that long (within :data:`BAG_SPEED_RANGE`). Returns
    ``record_bag``'s summary plus the world's ``goal`` (x, y, z)."""
    from depth_nodes.sim.bag import record_bag
    from depth_nodes.sim.route import plan_route, route_trajectory
    from depth_nodes.sim.world import WorldSpec, build_world

    spec = WorldSpec(world, seed, density, None)
    built = build_world(spec)
    route = route_trajectory(plan_route(built), speed=1.0).pos
    length = float(np.sum(np.linalg.norm(np.diff(route, axis=0), axis=1)))
    speed = float(np.clip(length / seconds, *BAG_SPEED_RANGE))
    log.info("recording a %.0f s input bag (%s, seed %d, route %.1f m at %.2f m/s)", seconds, world, seed,
             length, speed)
    return {**record_bag(out, spec, duration_s=seconds, speed=speed, world=built), "goal": built.goal.tolist()}


def bench_pipeline(mode: str, duration_s: float, warmup_s: float, world: str, density: str, seed: int,
                   source: str = "bag", node_threads: int = 1) -> dict:
    """Run the graph for ``warmup_s + duration_s`` wall seconds and measure it (see module doc)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from tqdm import tqdm

    from depth_nodes.launcher import ProcessGroup, build_children, write_config
    from depth_nodes.ros.graph_monitor import GraphMonitor

    if mode not in MODES:
        raise ValueError(f"--mode must be one of {sorted(MODES)}, got {mode!r}")
    if mode == "mono-radar" and best_available_mode() != "mono-radar":
        raise ValueError("--mode mono-radar needs trained weights (depth_nodes/depth/weights/mono_radar.safetensors)")
    if not (duration_s > 0 and warmup_s >= 0):
        raise ValueError(f"--duration must be > 0 and --warmup >= 0, got {duration_s}, {warmup_s}")
    if source not in SOURCES:
        raise ValueError(f"--source must be one of {SOURCES}, got {source!r}")
    depth_topic = "ground_truth/depth" if mode == "gt" else "depth/image"
    if node_threads < 0:
        raise ValueError(f"--node-threads must be >= 0, got {node_threads}")
    env = dict(os.environ)
    if node_threads:  # every node process's kernels (Open3D, TSDF, network runtime): see the CLI help
        env["OMP_NUM_THREADS"] = str(node_threads)
    env.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")})
    with tempfile.TemporaryDirectory() as tmp:
        launch = {**MODES[mode], "lockstep": "false", "world": world, "density": density, "seed": str(seed)}
        if source == "bag":
            bag = Path(tmp) / "input_bag"
            goal = record_input_bag(bag, world, density, seed, warmup_s + duration_s + BAG_MARGIN_S)["goal"]
            topics = ("odom", "sim/world_spec", "sim/rig") + BAG_TOPICS[mode]
            launch.update(use_sim="false", bag=str(bag), bag_topics=",".join(topics))
            config = write_config(Path(tmp) / "bench.yaml", {})
        else:
            config = write_config(Path(tmp) / "bench.yaml", {"sim_node": bench_sim_params(mode)})
        children, largs = build_children({**launch, "config": str(config)})
        group = ProcessGroup(children, env=env)
        context = rclpy.Context()
        rclpy.init(context=context)
        monitor = GraphMonitor(depth_topic=depth_topic, watch_map_and_odom=False, context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(monitor)
        if source == "bag":  # the goal sim_node would latch
            publish_goal(monitor, goal)

        def spin_for(seconds: float, bar=None) -> None:
            start = time.monotonic()
            shown = 0
            while (elapsed := time.monotonic() - start) < seconds:
                if group.wait(timeout_s=0.0) != "timeout":
                    raise RuntimeError("a node process exited during the benchmark")
                executor.spin_once(timeout_sec=0.05)
                if bar is not None and int(elapsed) > shown:  # whole seconds
                    bar.update(int(elapsed) - shown)
                    shown = int(elapsed)

        try:
            if source == "bag":  # the pipeline first, so the bag's first frames meet running nodes
                group.start([c.name for c in children if c.name != "bag_player"])
                wait_for_subscribers(monitor, spin_for, ["odom", depth_topic, BAG_TOPICS[mode][0]])
            group.start()
            t0 = time.monotonic()
            while monitor.log("planner/trajectory").count == 0 or monitor.log(depth_topic).count == 0:
                if time.monotonic() - t0 > STARTUP_TIMEOUT_S:
                    raise RuntimeError(f"no trajectory planned on {depth_topic} within {STARTUP_TIMEOUT_S} s")
                spin_for(0.1)
            log.info("graph up after %.1f s; warming up %.0f s", time.monotonic() - t0, warmup_s)
            spin_for(warmup_s)
            diag_start = {k: dict(v) for k, v in monitor.diagnostics.items()}
            monitor.logs.clear()
            monitor.plan_status.clear()
            with tqdm(total=int(duration_s), desc="pipeline", unit="s", leave=False) as bar:
                spin_for(duration_s, bar)
            spin_for(1.5)  # the diagnostics of the last period
        finally:
            group.stop()
            executor.shutdown()
            monitor.destroy_node()
            rclpy.shutdown(context=context)
    return _summary(monitor, diag_start, mode, depth_topic, duration_s, warmup_s, largs, source,
                    env.get("OMP_NUM_THREADS"))


def publish_goal(node, goal):
    """Latch ``goal`` (x, y, z in ``map``) on ``goal_pose`` from ``node``, as sim_node does."""
    from geometry_msgs.msg import PoseStamped

    from depth_nodes.geometry import pose_from_xyz_yaw
    from depth_nodes.ros.clock import LATCHED_QOS
    from depth_nodes.ros.conversions import pose_to_pose_stamped_msg

    pub = node.create_publisher(PoseStamped, "goal_pose", LATCHED_QOS)
    pub.publish(pose_to_pose_stamped_msg(pose_from_xyz_yaw(goal, 0.0), frame_id="map"))
    return pub


def wait_for_subscribers(monitor, spin_for, topics: list[str], timeout_s: float = STARTUP_TIMEOUT_S) -> None:
    """Spin until every topic of ``topics`` has a subscriber in the graph (the nodes reading it are up;
    their diagnostics cannot tell yet: on simulated time their timers wait for the first /clock)."""
    t0 = time.monotonic()
    while missing := [t for t in topics if monitor.count_subscribers(t) == 0]:
        if time.monotonic() - t0 > timeout_s:
            raise RuntimeError(f"no node subscribed to {missing} within {timeout_s} s")
        spin_for(0.1)


def _summary(m, diag_start: dict, mode: str, depth_topic: str, duration_s: float, warmup_s: float,
             largs: dict, source: str, node_threads: str | None) -> dict:
    lat = m.e2e_latencies_ms()
    third = max(1, len(lat) // 3)
    cam = m.log("camera/camera_info")
    cam_span_wall = cam.wall_s[-1] - cam.wall_s[0] if cam.count > 1 else 0.0
    cam_span_sim = max(cam.stamp_s) - min(cam.stamp_s) if cam.count > 1 else 0.0
    median, p90 = _percentiles(lat)
    ages, seen = [], set()  # sim-time age of the depth frame when first planned on (monitor-independent)
    for _, st in m.plan_status:
        if st.get("depth_stamp") is not None and round(st["depth_stamp"] * 1000) not in seen:
            seen.add(round(st["depth_stamp"] * 1000))
            ages.append((st["stamp"] - st["depth_stamp"]) * 1e3)
    out = {
        "mode": mode,
        "e2e_latency_ms_median": median,
        "e2e_latency_ms_p90": p90,
        "e2e_latency_ms_median_first_third": _percentiles(lat[:third])[0],
        "e2e_latency_ms_median_last_third": _percentiles(lat[-third:])[0],
        "e2e_frames_measured": len(lat),
        "depth_age_at_plan_sim_ms_median": _percentiles(ages)[0],
        "depth_age_at_plan_sim_ms_p90": _percentiles(ages)[1],
        "camera_rate_hz": cam.wall_rate_hz(),
        "sim_realtime_factor": cam_span_sim / cam_span_wall if cam_span_wall > 0 else float("nan"),
        "depth_rate_hz": m.log(depth_topic).wall_rate_hz(),
        "trajectory_rate_hz": m.log("planner/trajectory").wall_rate_hz(),
        "camera_frames": cam.count,
        "camera_frames_planned_on": len(seen),
        "planner_statuses": {s: sum(1 for _, st in m.plan_status if st.get("status") == s)
                             for s in sorted({st.get("status") for _, st in m.plan_status})},
        "sim_status": m.sim_status,
        "duration_s": duration_s,
    }
    # where the time goes: every node's per-stage medians (wall ms, diagnostics of the last period)
    out["stage_latency_ms_median"] = {f"{r['node']}/{r['stage']}": r["median_ms"]
                                      for r in stage_latencies(m.diagnostics)}
    node = "/mono_depth_node" if mode == "mono-radar" else "/stereo_depth_node"
    for key in ("frames_dropped", "frames_processed"):
        end, start = _int_diag(m.diagnostics, node, key), _int_diag(diag_start, node, key)
        out[f"depth_node_{key}"] = None if end is None else end - (start or 0)
    out["run_info"] = run_info(mode=mode, source=source, depth_topic=depth_topic, warmup_s=warmup_s,
                               image_size="320x240", camera_rate_hz_nominal=10.0, lockstep=False, device="cpu",
                               node_omp_num_threads=node_threads,
                               launch_args={k: largs[k] for k in ("use_sim", "mode", "stereo_backend", "depth_source",
                                                                  "world", "density", "seed", "extent", "bag_topics")})
    return out
