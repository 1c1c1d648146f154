"""``depth-nodes eval map``: TSDF reconstruction accuracy and completeness, GT depth vs estimated depth.

On a simulated world (default) the camera flies the world's scripted route; at
each sampled pose the map of every depth source is built at the ground-truth
pose: rendered ground-truth depth always, and with ``--mode`` an estimator
(``mono``, ``mono-radar``, ``stereo``, ``sgbm``) on the rendered images, so the
estimated-depth figures come out of the same run as the GT-depth ones. With
``--bag`` a recorded sim bag is replayed instead (the ``eval replay``
pipeline) once with its ground-truth depth and once with ``--mode``. The
metric itself lives in :mod:`depth_nodes.mapping.metrics`. Lives in the
evaluation layer because it uses the simulator, the estimators and the map.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

import numpy as np

from depth_nodes import cliutil
from depth_nodes.depth.interface import MODES

log = logging.getLogger(__name__)

#: Depth sources understood by ``eval map --mode``.
MAP_MODES = ("gt",) + MODES
#: Ground-truth surface samples kept per frame for completeness.
_GT_SAMPLES_PER_FRAME = 2000


def register_map_eval(groups) -> None:
    from depth_nodes.eval.map_memory import register_map_memory

    p = groups["eval"].add_parser(
        "map", help="TSDF reconstruction accuracy/completeness: GT depth and an estimator, at GT poses",
        description="Build TSDF maps at ground-truth poses from ground-truth depth and (with --mode) from "
                    "estimated depth, and score both against the simulated world in one run.")
    cliutil.add_json_flag(p)
    p.add_argument("--mode", default="gt", choices=MAP_MODES,
                   help="depth source scored beside ground-truth depth (gt: ground truth only)")
    p.add_argument("--bag", default=None,
                   help="replay this sim bag (eval replay pipeline; needs ground truth and sim/world_spec) instead "
                        "of flying a simulated world (--world/--width/--height/--depth-max/--threshold then unused)")
    p.add_argument("--weights", default=None, help="network weights .safetensors (default: packaged)")
    p.add_argument("--world", default="forest", help="world kind (forest | urban | indoor)")
    p.add_argument("--seed", type=int, default=3, help="world seed (and image noise seed)")
    p.add_argument("--frames", type=int, default=60, help="frames sampled evenly along the route (bag: max frames)")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--voxel-size", type=float, default=0.10, help="voxel edge (m)")
    p.add_argument("--depth-max", type=float, default=12.0, help="integration range (m)")
    p.add_argument("--threshold", type=float, default=0.15, help="completeness distance (m)")
    p.set_defaults(func=_eval_map)
    register_map_memory(groups)


@dataclass
class _Track:
    """One depth source's map and per-frame figures."""

    tsdf: object
    integrate_ms: list
    depth_ms: list
    abs_rel: list


def evaluate_sim_map(world, rig, poses, velocities, mode: str, tsdf_config, threshold_m: float = 0.15,
                     seed: int = 0, weights=None, progress: bool = False) -> dict[str, dict]:
    """Reconstruction metrics of maps built at the body poses ``poses`` (K, 4, 4) (``map``
    <- ``base_link``, moving at ``velocities`` (K, 3) m/s) from rendered ground-truth depth
    and, unless ``mode == "gt"``, from ``mode``'s estimate on the rendered images.

    Returns ``{"gt": metrics}`` or ``{"gt": ..., mode: ...}``; each holds
    :func:`~depth_nodes.mapping.metrics.reconstruction_metrics` (completeness
    against the same ground-truth surface samples) plus ``integrate_ms_median``,
    ``frames_integrated``, ``map`` statistics and, for an estimator,
    ``depth_ms_median`` (image rendering + estimation) and
    ``depth_abs_rel_median`` (per-frame median of |d - d_gt| / d_gt over
    pixels valid in both within ``depth_max``).
    """
    from tqdm import tqdm

    from depth_nodes.mapping.metrics import reconstruction_metrics
    from depth_nodes.mapping.tsdf import TsdfMap
    from depth_nodes.geometry import transform_points
    from depth_nodes.sim.render import render_depth
    from depth_nodes.sim.suite import SensorSuite

    if mode not in MAP_MODES:
        raise ValueError(f"mode must be one of {MAP_MODES}, got {mode!r}")
    cam = rig.camera
    source = None
    if mode != "gt":
        from depth_nodes.eval.flight import DepthSource

        source = DepthSource(mode, SensorSuite(world, rig))
        if weights is not None:
            from depth_nodes.depth.interface import make_estimator

            source.estimator = make_estimator(mode, weights=weights)
    tracks = {m: _Track(TsdfMap(tsdf_config), [], [], []) for m in (("gt",) if source is None else ("gt", mode))}
    rng = np.random.default_rng(seed)
    gt_samples = []
    dmax = tsdf_config.depth_max
    for T_body, v in tqdm(list(zip(poses, velocities)), desc=f"eval map ({mode})", leave=False,
                          disable=not progress):
        T_cam = T_body @ rig.T_body_camera
        gt = render_depth(world, cam, T_cam)
        frames = {"gt": (gt, 0.0)}
        if source is not None:
            t0 = time.perf_counter()
            est, _ = source(T_body, v, rng)
            frames[mode] = (est, (time.perf_counter() - t0) * 1e3)
        for name, (depth, depth_ms) in frames.items():
            tr = tracks[name]
            r = tr.tsdf.integrate(depth, cam, T_cam)
            if not r.accepted:
                log.warning("%s frame rejected: %s", name, r.reason)
                continue
            tr.integrate_ms.append(r.time_ms)
            if name != "gt":
                tr.depth_ms.append(depth_ms)
                with np.errstate(invalid="ignore"):
                    ok = np.isfinite(depth) & np.isfinite(gt) & (gt > 0) & (gt <= dmax)
                if ok.any():
                    tr.abs_rel.append(float(np.median(np.abs(depth[ok] - gt[ok]) / gt[ok])))
        d = gt.copy()
        d[~(d <= dmax)] = np.nan
        pts = cam.unproject(d).astype(np.float64)
        if len(pts):
            pts = pts[rng.choice(len(pts), size=min(len(pts), _GT_SAMPLES_PER_FRAME), replace=False)]
            gt_samples.append(transform_points(T_cam, pts))
    gt_pts = np.concatenate(gt_samples) if gt_samples else np.zeros((0, 3))
    out = {}
    for name, tr in tracks.items():
        surf, _, _ = tr.tsdf.surface_points()
        res = reconstruction_metrics(surf, world.distance, gt_pts, threshold_m)
        res["integrate_ms_median"] = float(np.median(tr.integrate_ms)) if tr.integrate_ms else None
        res["frames_integrated"] = len(tr.integrate_ms)
        if name != "gt":
            res["depth_ms_median"] = float(np.median(tr.depth_ms)) if tr.depth_ms else None
            res["depth_abs_rel_median"] = float(np.median(tr.abs_rel)) if tr.abs_rel else None
        res["map"] = tr.tsdf.stats()
        out[name] = res
    return out


def route_poses(world, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """``frames`` body poses (K, 4, 4) and velocities (K, 3) sampled evenly along the world's scripted route."""
    from depth_nodes.geometry import pose_from_xyz_yaw
    from depth_nodes.sim.route import plan_route, route_trajectory

    traj = route_trajectory(plan_route(world))
    idx = np.unique(np.linspace(0, len(traj.t) - 1, frames).round().astype(int))
    poses = np.stack([pose_from_xyz_yaw(traj.pos[i], float(traj.yaw[i])) for i in idx])
    return poses, traj.vel[idx]


def _side_by_side(results: dict[str, dict], mode: str) -> dict:
    """The selected mode's metrics at top level; with an estimator, GT-depth figures under ``gt_depth``."""
    out = dict(results[mode])
    if mode != "gt":
        out["gt_depth"] = results["gt"]
    out["mode"] = mode
    return out


def _eval_map_bag(args) -> dict:
    """Map metrics of ``eval replay`` on a sim bag: ground-truth depth and ``--mode``."""
    from depth_nodes.eval.replay import ReplayConfig, replay_bag

    results = {}
    for mode in dict.fromkeys(("gt", args.mode)):
        cfg = ReplayConfig(mode=mode, max_frames=args.frames, weights=args.weights, voxel_size=args.voxel_size,
                           seed=args.seed, progress=True)
        metrics = replay_bag(args.bag, cfg).metrics
        if metrics.get("map") is None:
            raise ValueError(f"--bag {args.bag}: no map ground truth (needs ground_truth/depth and a sim/world_spec "
                             f"the simulator can rebuild)")
        depth = metrics.get("depth") or {}
        results[mode] = {**metrics["map"], "frames_integrated": metrics.get("frames"),
                         "depth_abs_rel": depth.get("abs_rel"), "depth_delta1": depth.get("delta1")}
    out = _side_by_side(results, args.mode)
    out.update(cliutil.run_info(data=str(args.bag), seed=args.seed, device="cpu", mode=args.mode,
                                frames=args.frames, voxel_size=args.voxel_size,
                                threads=os.environ.get("OMP_NUM_THREADS")))
    return out


def _eval_map(args) -> int:
    from depth_nodes.mapping.config import TsdfConfig
    from depth_nodes.sim.rig import SensorRig
    from depth_nodes.sim.world import WorldSpec, build_world

    if not 1 <= args.frames <= 100_000:
        raise ValueError(f"--frames must be in [1, 100000], got {args.frames}")
    if args.bag is not None:
        cliutil.emit_result(_eval_map_bag(args), args.json)
        return 0
    world = build_world(WorldSpec(kind=args.world, seed=args.seed))
    rig = SensorRig.with_size(args.width, args.height)
    cfg = TsdfConfig(voxel_size=args.voxel_size, sdf_trunc=round(3 * args.voxel_size, 6), depth_max=args.depth_max)
    poses, vel = route_poses(world, args.frames)
    results = evaluate_sim_map(world, rig, poses, vel, args.mode, cfg, args.threshold, seed=args.seed,
                               weights=args.weights, progress=True)
    out = _side_by_side(results, args.mode)
    depth = "GT depth" if args.mode == "gt" else f"GT depth and {args.mode} depth"
    out.update(cliutil.run_info(
        data=f"sim world {args.world} seed {args.seed}, {depth}, GT poses", seed=args.seed,
        device=str(out["map"]["device"]), mode=args.mode, world=args.world, frames=int(len(poses)),
        image_size=[rig.camera.width, rig.camera.height], voxel_size=cfg.voxel_size, sdf_trunc=cfg.sdf_trunc,
        depth_max=cfg.depth_max, weights=args.weights, threads=os.environ.get("OMP_NUM_THREADS")))
    cliutil.emit_result(out, args.json)
    return 0
