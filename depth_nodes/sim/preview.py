"""Preview PNGs of a world and its sensors (for eyeballing worlds and conventions)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from depth_nodes.sim.radar import transform_radar_points  # noqa: E402
from depth_nodes.sim.rig import SensorRig  # noqa: E402
from depth_nodes.sim.route import plan_route, route_trajectory  # noqa: E402
from depth_nodes.sim.suite import SensorSuite  # noqa: E402
from depth_nodes.sim.vehicle import Vehicle  # noqa: E402
from depth_nodes.sim.world import FLIGHT_HEIGHT_M, WorldSpec, build_world  # noqa: E402


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def write_preview(spec: WorldSpec, out_dir, t_view_s: float = 4.0, rig: SensorRig | None = None) -> list[Path]:
    """Write camera.png, depth.png, stereo.png, radar.png and topdown.png; return their paths.

    The sensor view is taken ``t_view_s`` seconds into the scripted route.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    world = build_world(spec)
    rig = rig or SensorRig()
    waypoints = plan_route(world)
    traj = route_trajectory(waypoints, speed=2.0)
    vehicle = Vehicle(world, world.start, yaw=float(traj.yaw[0]))
    vehicle.follow(traj)
    for _ in range(int(round(min(t_view_s, traj.duration) / 0.02))):
        vehicle.step(0.02)
    suite = SensorSuite(world, rig)
    fr = suite.render(vehicle.pose, vehicle.state.vel, np.random.default_rng(spec.seed))
    files = []
    title = f"{spec.kind} seed={spec.seed} density={spec.density:g}"

    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    ax.imshow(fr.rgb)
    ax.set_title(f"camera  {title}")
    ax.axis("off")
    files.append(_save(fig, out / "camera.png"))

    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    im = ax.imshow(fr.depth, cmap="turbo", vmin=0.0, vmax=float(np.nanpercentile(fr.depth, 98)))
    fig.colorbar(im, ax=ax, label="depth along optical z [m] (white: no return)")
    ax.set_title("ground-truth depth")
    ax.axis("off")
    files.append(_save(fig, out / "depth.png"))

    fig, ax = plt.subplots(figsize=(12.8, 4.8))
    ax.imshow(np.hstack([fr.rgb, fr.right]))
    ax.set_title(f"stereo left | right (baseline {rig.baseline_m:.2f} m)")
    ax.axis("off")
    files.append(_save(fig, out / "stereo.png"))

    pts = transform_radar_points(fr.radar.points, rig.T_camera_radar)
    uv, z = rig.camera.project(pts[:, :3])
    vis = rig.camera.in_image(uv, z)
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    ax.imshow(fr.rgb)
    sc = ax.scatter(uv[vis, 0], uv[vis, 1], c=np.linalg.norm(pts[vis, :3], axis=1), cmap="turbo", s=14,
                    edgecolors="k", linewidths=0.3)
    fig.colorbar(sc, ax=ax, label="radar range [m]")
    ax.set_title(f"radar returns over camera ({vis.sum()} of {len(pts)} in view)")
    ax.axis("off")
    files.append(_save(fig, out / "radar.png"))

    lo, hi = world.bounds
    res = 0.1
    xs = np.arange(lo[0], hi[0], res)
    ys = np.arange(lo[1], hi[1], res)
    X, Y = np.meshgrid(xs, ys)
    Z = world.ground_z(X, Y) + FLIGHT_HEIGHT_M
    d = world.distance(np.stack([X, Y, Z], -1).reshape(-1, 3)).reshape(X.shape)
    fig, ax = plt.subplots(figsize=(12, 12 * (hi[1] - lo[1]) / max(hi[0] - lo[0], 1.0) + 1.0))
    ax.imshow(np.where(d < 0.3, 0.0, np.clip(d, 0.0, 3.0)), origin="lower", cmap="gray",
              extent=(lo[0], hi[0], lo[1], hi[1]))
    ax.plot(traj.pos[:, 0], traj.pos[:, 1], "c-", lw=2, label="scripted route")
    ax.plot(*world.start[:2], "go", ms=10, label="start")
    ax.plot(*world.goal[:2], "r*", ms=14, label="goal")
    cam_xy = fr.T_world_cam[:2, 3]
    fwd = fr.T_world_cam[:2, 2]
    ax.arrow(cam_xy[0], cam_xy[1], 3 * fwd[0], 3 * fwd[1], color="y", width=0.15, label="preview camera")
    ax.set_xlabel("x [m]")
    ax.set_ylabel("y [m]")
    ax.set_title(f"top-down {title}: distance to surfaces at {FLIGHT_HEIGHT_M} m above ground "
                 "(black: within 0.3 m)")
    ax.legend(loc="upper right")
    files.append(_save(fig, out / "topdown.png"))
    return files


