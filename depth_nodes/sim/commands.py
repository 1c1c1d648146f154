"""CLI subcommands of the simulator: ``sim dataset|record|preview`` and ``bench render``."""
from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from depth_nodes.cliutil import add_json_flag, emit_result, run_info

log = logging.getLogger("depth_nodes.sim")


def _add_world_args(p, default_kind: str = "forest") -> None:
    p.add_argument("--world", default=default_kind, choices=("forest", "urban", "indoor"), help="world kind")
    p.add_argument("--seed", type=int, default=0, help="world seed")
    p.add_argument("--density", default="medium",
                   help="sparse|medium|dense or a number (forest: trees per 100 m^2)")


def _density(text: str):
    try:
        return float(text)
    except ValueError:
        return text


def _spec(args):
    from depth_nodes.sim.world import WorldSpec

    return WorldSpec(args.world, args.seed, _density(args.density))


def _cmd_dataset(args) -> int:
    from depth_nodes.sim.dataset import write_dataset

    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    m = write_dataset(args.out, args.worlds, args.frames, kinds=kinds, seed=args.seed,
                      width=args.width, height=args.height)
    log.info("wrote %d frames to %s", len(m["frames"]), args.out)
    return 0


def _cmd_record(args) -> int:
    from depth_nodes.sim.bag import record_bag

    c0, t0 = time.process_time(), time.perf_counter()
    from depth_nodes.sim.odometry import OdometryNoise

    noise = OdometryNoise(drift_pos_m_per_sqrt_m=args.odom_drift, drift_yaw_rad_per_sqrt_m=args.odom_drift * 0.1,
                          vel_sigma_mps=args.odom_noise, pos_sigma_m=args.odom_noise * 0.2)
    summary = record_bag(args.out, _spec(args), duration_s=args.duration, storage=args.storage,
                         speed=args.speed, seed=args.seed, odom_noise=noise)
    log.info("recorded %s in %.1f s wall, %.1f s CPU: %s", args.out, time.perf_counter() - t0,
             time.process_time() - c0, summary["counts"])
    return 0


def _cmd_preview(args) -> int:
    from depth_nodes.sim.preview import write_preview

    files = write_preview(_spec(args), args.out)
    for f in files:
        log.info("wrote %s", f)
    return 0


def _time_interleaved(fns: dict, repeat: int, warmup: int = 2) -> dict:
    """Median/p90 wall and median CPU milliseconds per call of each ``fns`` entry.

    Calls are interleaved round-robin so load changes on a shared machine hit every
    entry alike. CPU time is ``time.process_time`` (all threads of this process).
    """
    wall = {k: [] for k in fns}
    cpu = {k: [] for k in fns}
    for i in range(warmup + repeat):
        for k, fn in fns.items():
            c0, w0 = time.process_time(), time.perf_counter()
            fn(i)
            if i >= warmup:
                wall[k].append((time.perf_counter() - w0) * 1e3)
                cpu[k].append((time.process_time() - c0) * 1e3)
    return {k: {"ms": float(np.median(wall[k])), "ms_p90": float(np.percentile(wall[k], 90)),
                "cpu_ms": float(np.median(cpu[k]))} for k in fns}


def _cmd_bench_render(args) -> int:
    from depth_nodes.geometry import pose_from_xyz_yaw
    from depth_nodes.sim.render import default_shade_threads
    from depth_nodes.sim.rig import SensorRig
    from depth_nodes.sim.suite import SensorSuite
    from depth_nodes.sim.world import WorldSpec, build_world

    length, width = 60.0, 30.0
    density = args.trees / ((length + 6.0) * width) * 100.0   # forest wooded area is (length + 6) x width
    spec = WorldSpec("forest", args.seed, density, (length, width))
    t0 = time.perf_counter()
    world = build_world(spec)
    build_ms = (time.perf_counter() - t0) * 1e3
    rig = SensorRig.with_size(args.width, args.height)
    suite = SensorSuite(world, rig)
    cam = suite.camera
    rng = np.random.default_rng(args.seed)
    poses = [pose_from_xyz_yaw(world.start + [x, 0.0, 0.0], 0.2 * np.sin(x)) for x in np.linspace(0, 3, 8)]
    T_cams = [T @ rig.T_body_camera for T in poses]
    n = len(poses)
    views = [cam.cast(T) for T in T_cams]
    t = _time_interleaved({
        "rgbd": lambda i: cam.rgbd(T_cams[i % n], rng),
        "depth": lambda i: cam.depth(T_cams[i % n]),
        "all": lambda i: suite.render(poses[i % n], [2.0, 0, 0], rng),
        "cast": lambda i: cam.cast(T_cams[i % n]),
        "shade": lambda i: cam._radiance(*views[i % n]),
    }, repeat=args.repeat)
    out = {
        "rgbd_320x240_ms": t["rgbd"]["ms"], "rgbd_320x240_ms_p90": t["rgbd"]["ms_p90"],
        "rgbd_320x240_cpu_ms": t["rgbd"]["cpu_ms"],
        "all_sensors_320x240_ms": t["all"]["ms"], "all_sensors_320x240_ms_p90": t["all"]["ms_p90"],
        "all_sensors_320x240_cpu_ms": t["all"]["cpu_ms"],
        "depth_only_ms": t["depth"]["ms"], "depth_only_cpu_ms": t["depth"]["cpu_ms"],
        "cast_one_image_ms": t["cast"]["ms"], "cast_one_image_cpu_ms": t["cast"]["cpu_ms"],
        "shade_one_image_ms": t["shade"]["ms"], "shade_one_image_cpu_ms": t["shade"]["cpu_ms"],
        "world_build_ms": build_ms, "trees_requested": args.trees,
        "triangles": world.n_triangles, "width": args.width, "height": args.height,
    }
    if args.record:
        from depth_nodes.sim.bag import record_bag

        with tempfile.TemporaryDirectory() as tmp:
            c0, t0 = time.process_time(), time.perf_counter()
            record_bag(Path(tmp) / "bag", WorldSpec("forest", 7, "medium"), duration_s=30.0, seed=7,
                       progress=False)
            out["record_30s_wall_s"] = time.perf_counter() - t0
            out["record_30s_cpu_s"] = time.process_time() - c0
    out.update(run_info(data=spec.to_dict(), seed=args.seed, device="cpu",
                        threads=os.cpu_count(), open3d_threads="auto (0)", shade_threads=default_shade_threads(),
                        camera_visibility="numba z-buffer rasterizer (sim/raster.py); Open3D for radar",
                        omp_num_threads=os.environ.get("OMP_NUM_THREADS"), repeat=args.repeat,
                        load_avg_1min=os.getloadavg()[0]))
    emit_result(out, args.json)
    return 0


def register(groups) -> None:
    sim = groups["sim"]
    p = sim.add_parser("dataset", help="render a training/eval dataset of npz frames + manifest.json")
    p.add_argument("--worlds", type=int, default=3, help="number of worlds")
    p.add_argument("--frames", type=int, default=20, help="frames per world")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--kinds", default="forest,urban,indoor", help="comma-separated world kinds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.set_defaults(func=_cmd_dataset)

    p = sim.add_parser("record", help="fly the scripted route and record a rosbag2")
    _add_world_args(p)
    p.add_argument("--duration", type=float, default=30.0, help="seconds of flight")
    p.add_argument("--out", required=True, help="bag directory to create")
    p.add_argument("--storage", default="mcap", choices=("mcap", "sqlite3"))
    p.add_argument("--speed", type=float, default=2.0, help="cruise speed, m/s")
    p.add_argument("--odom-drift", type=float, default=0.0,
                   help="odom position random walk, m per sqrt(m) travelled (yaw: 0.1 x this, rad)")
    p.add_argument("--odom-noise", type=float, default=0.0,
                   help="odom velocity white noise, m/s (position: 0.2 x this, m)")
    p.set_defaults(func=_cmd_record)

    p = sim.add_parser("preview", help="write preview PNGs of a world and its sensors")
    _add_world_args(p)
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(func=_cmd_preview)

    p = groups["bench"].add_parser("render", help="simulator rendering speed (300-tree forest): "
                                   "rasterized camera images, ray-cast radar")
    add_json_flag(p)
    p.add_argument("--trees", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--record", action="store_true",
                   help="also time recording a 30 s bag (forest, seed 7, as `sim record --seed 7`)")
    p.set_defaults(func=_cmd_bench_render)
