"""Training/evaluation dataset of rendered frames (format shared with the depth networks).

Layout of ``DIR``::

    manifest.json  {"version": 1,
                    "frames": [{"file": "frames/000_0000.npz", "world": {spec}, "frame": 0}, ...],
                    "camera": {"width", "height", "K": [9 floats], "baseline"},
                    "seed", "kinds", "rig", "radar_frame": "camera_optical_frame"}
    frames/WWW_FFFF.npz  (np.savez_compressed, no pickle) with keys
        rgb (H, W, 3) uint8 left image        right (H, W, 3) uint8 right image
        depth (H, W) float32 metres along the left optical z, NaN invalid
        radar (N, 5) float32 x, y, z, velocity, intensity in the LEFT CAMERA OPTICAL frame
        K (3, 3) float64   baseline () float64   T_world_cam (4, 4) float64

Poses follow plausible flight paths: positions near the scripted route with
lateral offsets (so some frames are close to obstacles), 1-2.5 m above ground,
varied yaw/pitch/roll. Everything is deterministic in ``seed``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from depth_nodes.geometry import make_pose, yaw_to_rot
from depth_nodes.sim.radar import transform_radar_points
from depth_nodes.sim.rig import SensorRig
from depth_nodes.sim.route import plan_route, route_trajectory
from depth_nodes.sim.suite import SensorSuite
from depth_nodes.sim.world import KINDS, World, WorldSpec, build_world

FORMAT_VERSION = 1
NPZ_KEYS = ("rgb", "right", "depth", "radar", "K", "baseline", "T_world_cam")


def _rot_xyz(roll: float, pitch: float, yaw: float) -> np.ndarray:
    cr, sr, cp, sp = np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch)
    Rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    Ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    return yaw_to_rot(yaw) @ Ry @ Rx


def flight_poses(world: World, n: int, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` (T_world_body, v_world) samples around the scripted route (or random free points)."""
    try:
        traj = route_trajectory(plan_route(world, clearance=0.5), speed=2.0)
    except ValueError:
        traj = None
    lo, hi = world.bounds
    out: list[tuple[np.ndarray, np.ndarray]] = []
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 200 * n:
            raise ValueError(f"could not find {n} free poses in world {world.spec}")
        if traj is not None and tries < 50 * n:
            p, v, _, yaw = traj.sample(rng.uniform(0, traj.duration))
            side = np.array([-np.sin(yaw), np.cos(yaw), 0.0])
            p = p + side * rng.normal(0, 0.8)
        else:
            p = np.array([rng.uniform(lo[0], hi[0]), rng.uniform(lo[1], hi[1]), 0.0])
            yaw = rng.uniform(-np.pi, np.pi)
            v = np.zeros(3)
        p[2] = float(world.ground_z(p[0], p[1])) + rng.uniform(1.0, 2.5)
        if float(world.distance(p[None])[0]) < 0.3:
            continue
        yaw = yaw + rng.normal(0, np.radians(35))
        R = _rot_xyz(rng.normal(0, np.radians(4)), rng.normal(0, np.radians(10)), yaw)
        speed = rng.uniform(0.0, 3.0)
        out.append((make_pose(R, p), R[:, 0] * speed))
    return out


def world_specs(n_worlds: int, kinds=KINDS, seed: int = 0) -> list[WorldSpec]:
    """Deterministic list of world specs cycling through ``kinds`` with random densities."""
    kinds = tuple(kinds)
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise ValueError(f"kinds must be a non-empty subset of {KINDS}, got {kinds}")
    if not 1 <= n_worlds <= 10000:
        raise ValueError(f"worlds must be in [1, 10000], got {n_worlds}")
    rng = np.random.default_rng([seed, 101])
    return [WorldSpec(kinds[i % len(kinds)], seed * 10000 + i, str(rng.choice(["sparse", "medium", "dense"])))
            for i in range(n_worlds)]


def write_dataset(out_dir, n_worlds: int, frames_per_world: int, kinds=KINDS, seed: int = 0,
                  width: int = 320, height: int = 240, progress: bool = True) -> dict:
    """Render the dataset into ``out_dir`` and return the manifest dict."""
    if not 1 <= frames_per_world <= 100000:
        raise ValueError(f"frames must be in [1, 100000], got {frames_per_world}")
    out = Path(out_dir)
    (out / "frames").mkdir(parents=True, exist_ok=True)
    rig = SensorRig.with_size(width, height)
    T_cam_radar = rig.T_camera_radar
    specs = world_specs(n_worlds, kinds, seed)
    frames = []
    bar = tqdm(total=n_worlds * frames_per_world, desc="dataset", unit="frame", disable=not progress,
               mininterval=1.0)
    for wi, spec in enumerate(specs):
        world = build_world(spec)
        suite = SensorSuite(world, rig)
        rng = np.random.default_rng([seed, wi, 17])
        for fi, (T_wb, v) in enumerate(flight_poses(world, frames_per_world, rng)):
            fr = suite.render(T_wb, v, np.random.default_rng([seed, wi, fi]))
            name = f"frames/{wi:03d}_{fi:04d}.npz"
            np.savez_compressed(out / name, rgb=fr.rgb, right=fr.right, depth=fr.depth,
                                radar=transform_radar_points(fr.radar.points, T_cam_radar),
                                K=rig.camera.K.copy(), baseline=np.float64(rig.baseline_m),
                                T_world_cam=fr.T_world_cam)
            frames.append({"file": name, "world": spec.to_dict(), "frame": fi})
            bar.update(1)
    bar.close()
    manifest = {
        "version": FORMAT_VERSION,
        "frames": frames,
        "camera": {"width": width, "height": height, "K": rig.camera.K.ravel().tolist(),
                   "baseline": rig.baseline_m},
        "seed": seed,
        "kinds": list(kinds),
        "radar_frame": "camera_optical_frame",
        "radar_fields": ["x", "y", "z", "velocity", "intensity"],
        "rig": rig.to_dict(),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def load_frame(path) -> dict:
    """Read one dataset frame (no pickle) into a dict of arrays."""
    with np.load(path, allow_pickle=False) as z:
        missing = set(NPZ_KEYS) - set(z.files)
        if missing:
            raise ValueError(f"dataset frame {path} lacks keys {sorted(missing)}")
        return {k: z[k] for k in NPZ_KEYS}
