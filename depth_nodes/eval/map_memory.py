"""``depth-nodes bench map-memory``: process memory and TSDF block count over a long simulated flight.

The camera flies a simulated world's scripted route back and forth (turning
round at each end) at ``rate_hz`` for ``minutes`` of simulated time; every
frame's rendered ground-truth depth is integrated with the sliding window on,
and the process RSS (psutil) and the map's block count are sampled every
``sample_every`` frames. Bounded memory shows as a flat RSS over the second
half of the flight and a block count at or under the budget. Rendering
dominates the cost, hence the small default image.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from depth_nodes import cliutil

#: Growth of RSS is reported over this last stretch of the flight (or its last half when shorter).
GROWTH_WINDOW_S = 300.0


@dataclass(frozen=True)
class MemoryFlightConfig:
    """Flight length (simulated minutes), frame rate (Hz), sampling (frames), image size (pixels)
    and map settings (metres; ``window_radius_m`` is the sliding-window radius)."""

    minutes: float = 10.0
    rate_hz: float = 10.0
    sample_every: int = 50
    width: int = 160
    height: int = 120
    voxel_size: float = 0.10
    depth_max: float = 20.0
    window_radius_m: float = 30.0
    block_budget: int = 40_000

    def __post_init__(self):
        for name, lo, hi in (("minutes", 1e-3, 24 * 60.0), ("rate_hz", 0.1, 1000.0), ("voxel_size", 0.02, 1.0),
                             ("depth_max", 0.5, 1000.0), ("window_radius_m", 1.0, 1e6)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
                raise ValueError(f"MemoryFlightConfig.{name} must be a number in [{lo}, {hi}], got {v!r}")
        for name, lo, hi in (("sample_every", 1, 1_000_000), ("width", 8, 4096), ("height", 8, 4096),
                             ("block_budget", 1, 10_000_000)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ValueError(f"MemoryFlightConfig.{name} must be an int in [{lo}, {hi}], got {v!r}")

    @property
    def frames(self) -> int:
        return max(1, int(round(self.minutes * 60.0 * self.rate_hz)))


def back_and_forth(traj, rate_hz: float, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions (K, 3) and yaws (K,) at ``rate_hz`` flying ``traj`` (a route with
    ``t``/``pos``/``yaw``) forwards, then backwards facing the other way, and so on."""
    t = np.asarray(traj.t, dtype=np.float64)
    period = float(t[-1] - t[0])
    if not period > 0:
        raise ValueError(f"route must last longer than 0 s, got {period} s")
    s = np.arange(frames) / rate_hz
    lap, phase = np.divmod(s, period)
    back = lap.astype(np.int64) % 2 == 1
    tau = t[0] + np.where(back, period - phase, phase)
    pos = np.stack([np.interp(tau, t, traj.pos[:, i]) for i in range(3)], axis=1)
    yaw = np.interp(tau, t, np.unwrap(traj.yaw)) + np.where(back, np.pi, 0.0)
    return pos, yaw


def fly_memory(world, cfg: MemoryFlightConfig, progress: bool = False) -> dict:
    """Fly ``cfg.minutes`` over ``world``'s route integrating ground-truth depth; returns RSS
    (MB), block counts (``blocks_farthest_m_end``: farthest block centre from the last camera
    position, metres) and timing figures plus the samples (``samples``: t_s, rss_mb, blocks)."""
    import psutil
    from tqdm import tqdm

    from depth_nodes.geometry import pose_from_xyz_yaw
    from depth_nodes.mapping.config import TsdfConfig
    from depth_nodes.mapping.tsdf import TsdfMap
    from depth_nodes.sim.render import render_depth
    from depth_nodes.sim.rig import SensorRig
    from depth_nodes.sim.route import plan_route, route_trajectory

    proc = psutil.Process()
    rig = SensorRig.with_size(cfg.width, cfg.height)
    cam = rig.camera
    tsdf = TsdfMap(TsdfConfig(voxel_size=cfg.voxel_size, depth_max=cfg.depth_max,
                              window_radius_m=cfg.window_radius_m, block_budget=cfg.block_budget))
    pos, yaw = back_and_forth(route_trajectory(plan_route(world)), cfg.rate_hz, cfg.frames)
    samples, integrate_ms, dropped = [], [], 0
    blocks_max = 0
    wall0 = time.perf_counter()
    for k in tqdm(range(cfg.frames), desc="map-memory flight", leave=False, disable=not progress):
        T_cam = pose_from_xyz_yaw(pos[k], float(yaw[k])) @ rig.T_body_camera
        r = tsdf.integrate(render_depth(world, cam, T_cam), cam, T_cam)
        if r.accepted:
            integrate_ms.append(r.time_ms)
            dropped += r.blocks_dropped
        blocks = tsdf.stats()["blocks"]
        blocks_max = max(blocks_max, blocks)
        if k % cfg.sample_every == 0 or k == cfg.frames - 1:
            samples.append((k / cfg.rate_hz, proc.memory_info().rss / 2 ** 20, blocks))
    a = np.asarray(samples, dtype=np.float64)
    t_end = a[-1, 0]
    window = min(GROWTH_WINDOW_S, t_end / 2)
    i0 = int(np.searchsorted(a[:, 0], t_end - window))
    stats = tsdf.stats()
    centres = tsdf.block_centers()
    far = float(np.linalg.norm(centres - T_cam[:3, 3], axis=1).max()) if len(centres) else 0.0
    return {
        "rss_mb_start": float(a[0, 1]),
        "rss_mb_peak": float(a[:, 1].max()),
        "rss_mb_end": float(a[-1, 1]),
        "rss_mb_growth_last_window": float(a[-1, 1] - a[i0, 1]),
        "growth_window_s": float(t_end - a[i0, 0]),
        "blocks_max": int(blocks_max),
        "blocks_end": int(stats["blocks"]),
        "blocks_dropped_total": int(dropped),
        "blocks_farthest_m_end": far,
        "capacity_blocks_end": int(stats["capacity_blocks"]),
        "map_memory_mb_end": float(stats["memory_mb"]),
        "block_budget": cfg.block_budget,
        "window_radius_m": cfg.window_radius_m,
        "frames": cfg.frames,
        "frames_integrated": len(integrate_ms),
        "flight_s": cfg.frames / cfg.rate_hz,
        "integrate_ms_median": float(np.median(integrate_ms)) if integrate_ms else None,
        "wall_s": time.perf_counter() - wall0,
        "samples": {"t_s": a[:, 0].tolist(), "rss_mb": a[:, 1].round(2).tolist(),
                    "blocks": a[:, 2].astype(int).tolist()},
    }


def register_map_memory(groups) -> None:
    d = MemoryFlightConfig()
    p = groups["bench"].add_parser(
        "map-memory", help="RSS and TSDF blocks over a long simulated flight with the sliding window on",
        description="Fly a simulated world's route back and forth for --minutes of simulated time at --rate-hz, "
                    "integrating rendered GT depth (small images: rendering dominates), and sample the process "
                    "RSS and the block count.")
    cliutil.add_json_flag(p)
    p.add_argument("--minutes", type=float, default=d.minutes, help="simulated flight time")
    p.add_argument("--rate-hz", type=float, default=d.rate_hz, help="depth frames per simulated second")
    p.add_argument("--sample-every", type=int, default=d.sample_every, help="frames between RSS samples")
    p.add_argument("--width", type=int, default=d.width)
    p.add_argument("--height", type=int, default=d.height)
    p.add_argument("--window-m", type=float, default=d.window_radius_m, help="sliding-window radius (m)")
    p.add_argument("--block-budget", type=int, default=d.block_budget)
    p.add_argument("--world", default="forest", help="world kind (forest | urban | indoor)")
    p.add_argument("--seed", type=int, default=3, help="world seed")
    p.set_defaults(func=_bench_map_memory)


def _bench_map_memory(args) -> int:
    from depth_nodes.sim.world import WorldSpec, build_world

    cfg = MemoryFlightConfig(minutes=args.minutes, rate_hz=args.rate_hz, sample_every=args.sample_every,
                             width=args.width, height=args.height, window_radius_m=args.window_m,
                             block_budget=args.block_budget)
    out = fly_memory(build_world(WorldSpec(kind=args.world, seed=args.seed)), cfg, progress=True)
    out.update(cliutil.run_info(
        data=f"sim world {args.world} seed {args.seed}, route flown back and forth, rendered GT depth",
        seed=args.seed, device="CPU:0", world=args.world, image_size=[cfg.width, cfg.height],
        rate_hz=cfg.rate_hz, voxel_size=cfg.voxel_size, depth_max=cfg.depth_max,
        threads=os.environ.get("OMP_NUM_THREADS")))
    cliutil.emit_result(out, args.json)
    return 0
