"""``depth-nodes eval map``: TSDF reconstruction accuracy and completeness on a simulated world.

Drives the simulator for ground-truth depth and poses along the world's scripted
route; the metric itself lives in :mod:`depth_nodes.mapping.metrics`. Lives in
the evaluation layer because it uses both the simulator and the map.
"""
from __future__ import annotations

import logging
import os

import numpy as np

from depth_nodes import cliutil

log = logging.getLogger(__name__)


def register_map_eval(groups) -> None:
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
