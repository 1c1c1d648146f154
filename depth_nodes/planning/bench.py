"""``depth-nodes bench planner``: collision-check and planning throughput on random forests."""
from __future__ import annotations

import argparse
import logging
from collections import Counter

import cv2
import numpy as np
from tqdm import tqdm

from depth_nodes.camera import PinholeCamera
from depth_nodes.cliutil import emit_result, run_info, time_call
from depth_nodes.geometry import camera_pose_from_body, pose_from_xyz_yaw
from depth_nodes.planning.collision import DepthObstacleImage, check_primitives, required_clearance
from depth_nodes.planning.distance import AnalyticDistanceField
from depth_nodes.planning.planner import PlannerConfig, PrimitivePlanner
from depth_nodes.planning.primitives import PrimitiveLibraryConfig
from depth_nodes.planning.state import DepthFrame, VehicleState

log = logging.getLogger(__name__)

#: Target for the collision check of one cycle (ms), from the planner issue.
CHECK_GOAL_MS = 10.0


def random_forest(rng: np.random.Generator, n_trees: int = 30, n_rocks: int = 8) -> AnalyticDistanceField:
    """Trees (vertical cylinders) and floating rocks (spheres) in x in [3, 14], |y| <= 6, with ground."""
    trees = np.column_stack([rng.uniform(3, 14, n_trees), rng.uniform(-6, 6, n_trees),
                             rng.uniform(0.15, 0.5, n_trees), np.zeros(n_trees), rng.uniform(3, 6, n_trees)])
    rocks = np.column_stack([rng.uniform(3, 14, n_rocks), rng.uniform(-6, 6, n_rocks),
                             rng.uniform(0.8, 2.5, n_rocks), rng.uniform(0.3, 0.8, n_rocks)])
    return AnalyticDistanceField(spheres=rocks, cylinders=trees, ground=True)


def bench_planner(args) -> int:
    for name in ("frames", "repeat", "samples", "width", "height"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if not 0.02 <= args.voxel <= 1.0:
        raise ValueError(f"--voxel must be in [0.02, 1.0] m, got {args.voxel}")
    cam = PinholeCamera.from_fov(args.width, args.height, args.hfov)
    lib = PrimitiveLibraryConfig(n_yaw=args.n_yaw, n_climb=args.n_climb, dt=args.horizon / args.samples,
                                 horizon_s=args.horizon)
    planner = PrimitivePlanner(PlannerConfig(library=lib))
    rng = np.random.default_rng(args.seed)
    if args.threads > 0:
        cv2.setNumThreads(args.threads)
    world = random_forest(rng)
    shape = (int(round(16 / args.voxel)), int(round(14 / args.voxel)), int(round(4 / args.voxel)))
    grid = world.to_grid([-1.0, -7.0, 0.0], shape, args.voxel)
    goal = np.array([15.0, 0.0, 1.5])

    scenes = []
    for _ in tqdm(range(args.frames), desc="rendering depth frames", disable=None):
        pos = np.array([rng.uniform(0.0, 2.5), rng.uniform(-3, 3), rng.uniform(1.0, 2.0)])
        yaw = rng.uniform(-0.5, 0.5)
        vel = rng.uniform(0.0, 2.5) * np.array([np.cos(yaw), np.sin(yaw), 0.0])
        state = VehicleState(pos, vel, np.zeros(3), yaw, stamp=0.0)
        T = camera_pose_from_body(pose_from_xyz_yaw(pos, yaw))
        scenes.append((state, world.render_depth(cam, T, max_range=20.0), T))

    gen, prep, check_map, check_depth, check_both, plan = [], [], [], [], [], []
    statuses, feasible = Counter(), []
    for state, depth, T in tqdm(scenes, desc="timing", disable=None):
        frame = DepthFrame(depth, cam, T, stamp=0.0)
        prims = planner.library.generate(state)
        req = required_clearance(prims, planner.config.robot_radius, planner.config.margin)
        def prepare():  # what the planner builds per frame
            return DepthObstacleImage(frame, planner.lateral_clearance, planner.config.no_return_free_m,
                                      planner.config.depth_pool)

        image = prepare()
        gen.append(time_call(lambda: planner.library.generate(state), repeat=args.repeat)["median_ms"])
        prep.append(time_call(prepare, repeat=args.repeat)["median_ms"])
        check_map.append(time_call(lambda: check_primitives(prims, req, distance_field=grid),
                                   repeat=args.repeat)["median_ms"])
        check_depth.append(time_call(lambda: check_primitives(prims, req, depth_image=image),
                                     repeat=args.repeat)["median_ms"])
        check_both.append(time_call(lambda: check_primitives(prims, req, distance_field=grid, depth_image=image),
                                    repeat=args.repeat)["median_ms"])
        # every cycle gets a new frame object, so plan_ms includes preparing the depth image
        plan.append(time_call(lambda: planner.plan(state, 0.05, goal, grid, DepthFrame(depth, cam, T, 0.0)),
                              repeat=args.repeat)["median_ms"])
        result = planner.plan(state, 0.05, goal, grid, frame)
        statuses[result.status.value] += 1
        feasible.append(float(result.collision.feasible.mean()))
        planner.reset()

    med = lambda xs: float(np.median(xs))  # noqa: E731  (median over frames of per-frame medians)
    out = {
        "check_ms": med(check_both),
        "check_ms_max": float(np.max(check_both)),
        "check_map_ms": med(check_map),
        "check_depth_ms": med(check_depth),
        "check_goal_ms": CHECK_GOAL_MS,
        "check_within_goal": bool(med(check_both) <= CHECK_GOAL_MS),
        "depth_prepare_ms": med(prep),
        "generate_ms": med(gen),
        "plan_ms_median": med(plan),
        "plan_ms_max": float(np.max(plan)),
        "n_primitives": len(prims),
        "n_samples": prims.n_samples,
        "n_frames": len(scenes),
        "image_width": cam.width,
        "image_height": cam.height,
        "grid_shape": list(grid.shape),
        "voxel_size_m": args.voxel,
        "feasible_fraction_mean": float(np.mean(feasible)),
        "status_counts": dict(statuses),
        "run_info": run_info(data="synthetic random forest (analytic cylinders+spheres, ground)",
                             seed=args.seed, device="cpu", threads=args.threads, cv2_threads=cv2.getNumThreads(),
                             repeat=args.repeat),
    }
    emit_result(out, args.json)
    return 0
