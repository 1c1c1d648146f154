"""CLI subcommands of the simulator: ``sim dataset|record|preview`` and ``bench render``."""
from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from depth_nodes.cliutil import add_json_flag, emit_json, run_info, time_call

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

    t0 = time.perf_counter()
    from depth_nodes.sim.odometry import OdometryNoise

    noise = OdometryNoise(drift_pos_m_per_sqrt_m=args.odom_drift, drift_yaw_rad_per_sqrt_m=args.odom_drift * 0.1,
                          vel_sigma_mps=args.odom_noise, pos_sigma_m=args.odom_noise * 0.2)
    summary = record_bag(args.out, _spec(args), duration_s=args.duration, storage=args.storage,
                         speed=args.speed, seed=args.seed, odom_noise=noise)
    log.info("recorded %s in %.1f s wall: %s", args.out, time.perf_counter() - t0, summary["counts"])
    return 0


def _cmd_preview(args) -> int:
    from depth_nodes.sim.preview import write_preview

    files = write_preview(_spec(args), args.out)
    for f in files:
        log.info("wrote %s", f)
    return 0


def _cmd_bench_render(args) -> int:
    from depth_nodes.geometry import pose_from_xyz_yaw
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
    rng = np.random.default_rng(args.seed)
    poses = [pose_from_xyz_yaw(world.start + [x, 0.0, 0.0], 0.2 * np.sin(x)) for x in np.linspace(0, 3, 8)]
    it = iter(range(10**9))
    T_cams = [T @ rig.T_body_camera for T in poses]
    rgbd = time_call(lambda: suite.camera.rgbd(T_cams[next(it) % len(T_cams)], rng), repeat=args.repeat)
    depth = time_call(lambda: suite.camera.depth(T_cams[next(it) % len(T_cams)]), repeat=args.repeat)
    allsens = time_call(lambda: suite.render(poses[next(it) % len(poses)], [2.0, 0, 0], rng), repeat=args.repeat)
    def cpu_ms(fn, n: int = 5) -> float:
        t0 = time.process_time()
        for _ in range(n):
            fn()
        return (time.process_time() - t0) / n * 1e3

    out = {
        "rgbd_320x240_ms": rgbd["median_ms"], "rgbd_320x240_ms_p90": rgbd["p90_ms"],
        "rgbd_320x240_cpu_ms": cpu_ms(lambda: suite.camera.rgbd(T_cams[0], rng)),
        "all_sensors_320x240_cpu_ms": cpu_ms(lambda: suite.render(poses[0], [2.0, 0, 0], rng)),
        "depth_only_ms": depth["median_ms"],
        "all_sensors_320x240_ms": allsens["median_ms"], "all_sensors_320x240_ms_p90": allsens["p90_ms"],
        "world_build_ms": build_ms, "trees_requested": args.trees,
        "triangles": world.n_triangles, "width": args.width, "height": args.height,
    }
    if args.record:
        from depth_nodes.sim.bag import record_bag

        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            record_bag(Path(tmp) / "bag", WorldSpec("forest", args.seed, "medium"), duration_s=30.0,
                       progress=False)
            out["record_30s_wall_s"] = time.perf_counter() - t0
    out.update(run_info(data=spec.to_dict(), seed=args.seed, device="cpu",
                        threads=os.cpu_count(), open3d_threads="auto (0)",
                        omp_num_threads=os.environ.get("OMP_NUM_THREADS"), repeat=args.repeat,
                        load_avg_1min=os.getloadavg()[0]))
    if args.json:
        emit_json(out)
    else:
        for k, v in out.items():
            print(f"{k}: {v}")
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

    p = groups["bench"].add_parser("render", help="simulator rendering speed (300-tree forest)")
    add_json_flag(p)
    p.add_argument("--trees", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--record", action="store_true", help="also time recording a 30 s bag")
    p.set_defaults(func=_cmd_bench_render)
