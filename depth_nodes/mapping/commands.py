"""CLI subcommands of the mapping layer: ``depth-nodes bench tsdf`` and ``depth-nodes eval map``.

``eval map`` drives the simulator to produce ground-truth depth and poses; the
metric itself lives in :mod:`depth_nodes.mapping.metrics`. Heavy modules
(Open3D, the simulator) are imported inside the command functions so that
building the CLI parser stays fast.
"""
from __future__ import annotations

import logging
import os
import time

import numpy as np

from depth_nodes import cliutil

log = logging.getLogger(__name__)


def register(groups) -> None:
    p = groups["bench"].add_parser(
        "tsdf", help="TSDF integration / query / ESDF speed on a synthetic planes-and-boxes scene")
    cliutil.add_json_flag(p)
    p.add_argument("--frames", type=int, default=20, help="depth frames integrated per resolution")
    p.add_argument("--points", type=int, default=1_000_000, help="query points per call")
    p.add_argument("--voxel-size", type=float, default=0.10, help="voxel edge (m)")
    p.add_argument("--block-resolution", type=int, default=8, choices=(8, 16))
    p.add_argument("--device", default="CPU:0", help="Open3D device (CPU:0 | CUDA:0)")
    p.add_argument("--carve-every", type=int, default=None,
                   help="carve free space every n-th frame (default: TsdfConfig.carve_every_n_frames)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_bench_tsdf)

    p = groups["eval"].add_parser(
        "map", help="TSDF reconstruction accuracy/completeness on a simulated world (GT depth + GT poses)")
    cliutil.add_json_flag(p)
    p.add_argument("--world", default="forest", help="world kind (forest | urban | indoor)")
    p.add_argument("--seed", type=int, default=3, help="world seed")
    p.add_argument("--frames", type=int, default=60, help="frames sampled evenly along the route")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--voxel-size", type=float, default=0.10, help="voxel edge (m)")
    p.add_argument("--depth-max", type=float, default=12.0, help="integration range (m)")
    p.add_argument("--threshold", type=float, default=0.15, help="completeness distance (m)")
    p.set_defaults(func=_eval_map)


def _trajectory(n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Camera poses flying along +x through the demo scene, with jittered heading."""
    from depth_nodes.mapping.synthetic import look_at

    poses = []
    for i in range(n):
        x = 2.0 * i / max(n - 1, 1)
        eye = (x, 0.6 * np.sin(0.7 * i), 1.2 + 0.2 * np.cos(0.5 * i))
        target = (10.0, rng.uniform(-2.5, 2.5), rng.uniform(0.6, 1.6))
        poses.append(look_at(eye, target))
    return poses


def _integrate_run(cfg, camera, poses, scene, label: str):
    """Integrate rendered frames into a fresh map; returns (map, wall ms, CPU ms per frame).

    CPU time (all threads of this process) is reported next to wall time
    because the benchmark machine is often shared: with ``OMP_NUM_THREADS=1``
    it approximates the wall time of an idle single core.
    """
    from tqdm import tqdm

    from depth_nodes.mapping.tsdf import TsdfMap

    frames = [(scene.render_depth(camera, T), T) for T in poses]
    m = TsdfMap(cfg)
    wall, cpu = [], []
    for depth, T in tqdm(frames, desc=f"integrate {label}", leave=False):
        c0 = time.process_time()
        r = m.integrate(depth, camera, T)
        cpu.append((time.process_time() - c0) * 1e3)
        if not r.accepted:
            raise ValueError(f"bench frame rejected: {r.reason}")
        wall.append(r.time_ms)
    return m, np.asarray(wall), np.asarray(cpu)


def _bench_tsdf(args) -> int:
    from depth_nodes.camera import PinholeCamera
    from depth_nodes.mapping.config import TsdfConfig
    from depth_nodes.mapping.synthetic import demo_scene

    if args.frames < 3 or args.points < 1:
        raise ValueError(f"--frames must be >= 3 and --points >= 1, got {args.frames}, {args.points}")
    rng = np.random.default_rng(args.seed)
    extra = {} if args.carve_every is None else {"carve_every_n_frames": args.carve_every}
    cfg = TsdfConfig(voxel_size=args.voxel_size, block_resolution=args.block_resolution, device=args.device,
                     **extra)
    scene = demo_scene()
    poses = _trajectory(args.frames, rng)
    out: dict = {}
    m = None
    for w, h in ((320, 240), (640, 480)):
        cam = PinholeCamera.from_fov(w, h, 90.0)
        m, wall, cpu = _integrate_run(cfg, cam, poses, scene, f"{w}x{h}")
        # the first frames allocate and grow the hash map
        out[f"integrate_{w}x{h}_ms"] = float(np.median(wall[2:]))
        out[f"integrate_{w}x{h}_ms_p90"] = float(np.percentile(wall[2:], 90))
        out[f"integrate_{w}x{h}_cpu_ms"] = float(np.median(cpu[2:]))
        out[f"integrate_{w}x{h}_blocks"] = m.stats()["blocks"]
    pts = rng.uniform((-1.0, -6.0, -0.5), (13.0, 6.0, 3.5), (args.points, 3))
    c0 = time.process_time()
    q = cliutil.time_call(lambda: m.query(pts), repeat=5, warmup=1)
    out["query_cpu_ms"] = (time.process_time() - c0) * 1e3 / 6
    sdf, known = m.query(pts)
    out["query_points_per_s"] = args.points / (q["median_ms"] / 1e3)
    out["query_ms_median"] = q["median_ms"]
    out["query_known_fraction"] = float(known.mean())
    c0 = time.process_time()
    e = cliutil.time_call(lambda: m.esdf_window((4.0, 0.0, 1.5), (8.0, 8.0, 3.0), 1.0), repeat=10, warmup=2)
    out["esdf_window_ms"] = e["median_ms"]
    out["esdf_window_cpu_ms"] = (time.process_time() - c0) * 1e3 / 12
    out["esdf_window_size_m"] = [16.0, 16.0, 6.0]
    out["esdf_max_distance_m"] = 1.0
    t0 = time.perf_counter()
    surf, _, _ = m.surface_points()
    out["surface_extract_ms"] = (time.perf_counter() - t0) * 1e3
    out["surface_error_m_median"] = float(np.median(np.abs(scene.signed_distance(surf)))) if len(surf) else None
    out["map"] = m.stats()
    out.update(cliutil.run_info(
        data="synthetic demo_scene (planes + boxes), rendered GT depth", seed=args.seed,
        device=str(m.device), frames=args.frames, points=args.points, voxel_size=cfg.voxel_size,
        block_resolution=cfg.block_resolution, carve_every_n_frames=cfg.carve_every_n_frames,
        omp_num_threads=os.environ.get("OMP_NUM_THREADS")))
    cliutil.emit_result(out, args.json)
    return 0


def _eval_map(args) -> int:
    from tqdm import tqdm

    from depth_nodes.mapping.config import TsdfConfig
    from depth_nodes.mapping.metrics import reconstruction_metrics
    from depth_nodes.mapping.tsdf import TsdfMap
    from depth_nodes.geometry import pose_from_xyz_yaw, transform_points
    from depth_nodes.sim.render import render_depth
    from depth_nodes.sim.rig import SensorRig
    from depth_nodes.sim.route import plan_route, route_trajectory
    from depth_nodes.sim.world import WorldSpec, build_world

    if not 1 <= args.frames <= 100_000:
        raise ValueError(f"--frames must be in [1, 100000], got {args.frames}")
    world = build_world(WorldSpec(kind=args.world, seed=args.seed))
    rig = SensorRig.with_size(args.width, args.height)
    cam = rig.camera
    cfg = TsdfConfig(voxel_size=args.voxel_size, sdf_trunc=round(3 * args.voxel_size, 6), depth_max=args.depth_max)
    traj = route_trajectory(plan_route(world))
    idx = np.unique(np.linspace(0, len(traj.t) - 1, args.frames).round().astype(int))
    m = TsdfMap(cfg)
    rng = np.random.default_rng(args.seed)
    gt_samples, times = [], []
    for i in tqdm(idx, desc="eval map", leave=False):
        T_cam = pose_from_xyz_yaw(traj.pos[i], float(traj.yaw[i])) @ rig.T_body_camera
        depth = render_depth(world, cam, T_cam)
        r = m.integrate(depth, cam, T_cam)
        if not r.accepted:
            log.warning("frame %d rejected: %s", i, r.reason)
            continue
        times.append(r.time_ms)
        d = depth.copy()
        d[~(d <= cfg.depth_max)] = np.nan
        pts = cam.unproject(d).astype(np.float64)
        if len(pts):
            pts = pts[rng.choice(len(pts), size=min(len(pts), 2000), replace=False)]
            gt_samples.append(transform_points(T_cam, pts))
    surf, _, _ = m.surface_points()
    gt = np.concatenate(gt_samples) if gt_samples else np.zeros((0, 3))
    out = reconstruction_metrics(surf, world.distance, gt, args.threshold)
    out["integrate_ms_median"] = float(np.median(times)) if times else None
    out["frames_integrated"] = len(times)
    out["map"] = m.stats()
    out.update(cliutil.run_info(
        data=f"sim world {args.world} seed {args.seed}, GT depth + GT poses", seed=args.seed,
        device=str(m.device), world=args.world, frames=int(len(idx)), image_size=[cam.width, cam.height],
        voxel_size=cfg.voxel_size, sdf_trunc=cfg.sdf_trunc, depth_max=cfg.depth_max,
        omp_num_threads=os.environ.get("OMP_NUM_THREADS")))
    cliutil.emit_result(out, args.json)
    return 0
