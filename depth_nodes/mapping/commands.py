"""CLI subcommand of the mapping layer: ``depth-nodes bench tsdf``.

Heavy modules (Open3D) are imported inside the command function so that
building the CLI parser stays fast. ``eval map`` lives in the evaluation layer
(it drives the simulator, which sits above mapping).
"""
from __future__ import annotations

import os
import time

import numpy as np

from depth_nodes import cliutil


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
    p.add_argument("--kernel", default="auto", choices=("auto", "numba", "numpy"),
                   help="CPU integration kernel (auto: compiled when numba is installed; same map either way)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_bench_tsdf)


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


def _integrate_run(cfg, camera, poses, scene, label: str, kernel: str):
    """Integrate rendered frames into a fresh map; returns (map, wall ms, CPU ms per frame).

    CPU time (all threads of this process) is reported next to wall time
    because the benchmark machine is often shared: with ``OMP_NUM_THREADS=1``
    it approximates the wall time of an idle single core.
    """
    from tqdm import tqdm

    from depth_nodes.mapping.tsdf import TsdfMap

    frames = [(scene.render_depth(camera, T), T) for T in poses]
    m = TsdfMap(cfg, kernel=kernel)
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
        m, wall, cpu = _integrate_run(cfg, cam, poses, scene, f"{w}x{h}", args.kernel)
        # the first frames allocate and grow the hash map
        out[f"integrate_{w}x{h}_ms"] = float(np.median(wall[2:]))
        out[f"integrate_{w}x{h}_ms_mean"] = float(np.mean(wall[2:]))
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
    def window():
        return m.esdf_window((4.0, 0.0, 1.5), (8.0, 8.0, 3.0), 1.0)

    window()  # the first call in a process loads the compiled kernels
    c0 = time.process_time()
    e = cliutil.time_call(window, repeat=10, warmup=1)
    out["esdf_window_ms"] = e["median_ms"]
    out["esdf_window_cpu_ms"] = (time.process_time() - c0) * 1e3 / 11
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
        omp_num_threads=os.environ.get("OMP_NUM_THREADS"), kernel=m.stats()["kernel"],
        kernel_threads=m.stats()["kernel_threads"],
        load_avg_1min=os.getloadavg()[0]))
    cliutil.emit_result(out, args.json)
    return 0
