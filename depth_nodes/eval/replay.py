"""Offline bag replay through the same core objects the nodes use (no DDS, no ROS).

For every synchronised frame of a rosbag2 (:class:`~depth_nodes.eval.frames.BagFrames`):

    depth     ground truth (``gt``) or an estimator (``mono``, ``mono-radar``, ``stereo``, ``sgbm``)
    map       :class:`~depth_nodes.mapping.tsdf.TsdfMap.integrate` at ``T_world_cam = T_world_body @ T_body_cam``
    esdf      :meth:`TsdfMap.esdf_window` around the body
    plan      :class:`~depth_nodes.planning.planner.PrimitivePlanner` (goal = the sim world's goal, else explore)

Frames run back to back as fast as the CPU allows; every stage is timed.
With ground truth the replay scores depth (pooled + per distance bin + per
frame), the map against the rebuilt sim world (accuracy / completeness) and the
planner (share of frames with a feasible primitive, true clearance of the
chosen primitive against the world). Without ground truth only timing,
coverage and self-consistency (agreement of each depth frame with the map built
from the frames before it) are reported, and ``ground_truth`` is False.

Frames: world ``map`` (z up), body ``base_link`` (REP-103), camera optical.
Units: metres, seconds, milliseconds in ``*_ms`` keys.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from depth_nodes.depth.interface import MODES, STEREO_MODES
from depth_nodes.geometry import check_pose, invert_pose, make_pose, quat_to_rot, rot_to_yaw, transform_points

LOG = logging.getLogger(__name__)

REPLAY_MODES = ("gt",) + MODES
#: Timed stages, in pipeline order (``read`` = bag read + decode + sync for one frame).
STAGES = ("read", "depth", "map", "esdf", "plan")
#: GT-depth / self-consistency pixels are taken on this pixel stride.
PIXEL_STRIDE = 4
#: ESDF window distances saturate here (metres), as in the closed-loop flight harness.
ESDF_MAX_DISTANCE_M = 1.0


def default_T_body_camera() -> np.ndarray:
    """The simulator rig's camera mount (the default extrinsic)."""
    from depth_nodes.sim.rig import SensorRig

    return SensorRig().T_body_camera.copy()


def parse_pose7(text: str, name: str) -> np.ndarray:
    """``"x,y,z,qx,qy,qz,qw"`` (metres, unit quaternion) -> 4x4 pose; ValueError naming ``name``."""
    try:
        v = [float(x) for x in str(text).replace(" ", ",").split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{name} must be 7 comma-separated numbers x,y,z,qx,qy,qz,qw, got {text!r}") from None
    if len(v) != 7 or not np.all(np.isfinite(v)):
        raise ValueError(f"{name} must be 7 finite numbers x,y,z,qx,qy,qz,qw, got {text!r}")
    return make_pose(quat_to_rot(v[3:]), v[:3])


@dataclass(frozen=True)
class Extrinsics:
    """``T_body_camera`` and ``T_camera_radar`` (None: radar already in the camera frame) and where they came from."""

    T_body_camera: np.ndarray
    T_camera_radar: np.ndarray | None
    source: dict


def resolve_extrinsics(rig: Mapping | None, T_body_camera=None, T_camera_radar=None) -> Extrinsics:
    """Pick the camera and radar extrinsics.

    Explicit arguments win; else the bag's ``sim/rig`` document (``T_body_camera``,
    ``T_body_radar``); else the sim rig's camera mount and identity for the
    radar (logged as a warning: radar points are then assumed to be in the
    camera optical frame already).
    """
    src: dict[str, str] = {}
    rig = rig if isinstance(rig, Mapping) else None
    if T_body_camera is not None:
        T_bc, src["T_body_camera"] = check_pose(T_body_camera, "camera-to-body"), "option"
    elif rig is not None and "T_body_camera" in rig:
        T_bc, src["T_body_camera"] = check_pose(rig["T_body_camera"], "sim/rig T_body_camera"), "sim/rig"
    else:
        T_bc, src["T_body_camera"] = default_T_body_camera(), "default sim rig"
    if T_camera_radar is not None:
        T_cr, src["T_camera_radar"] = check_pose(T_camera_radar, "radar-to-camera"), "option"
    elif rig is not None and "T_body_radar" in rig:
        T_cr = invert_pose(T_bc) @ check_pose(rig["T_body_radar"], "sim/rig T_body_radar")
        src["T_camera_radar"] = "sim/rig"
    else:
        T_cr, src["T_camera_radar"] = None, "identity (assumed)"
    return Extrinsics(T_bc, T_cr, src)


@dataclass(frozen=True)
class ReplayConfig:
    """What to replay and how.

    ``mode``: depth source (:data:`REPLAY_MODES`). ``topics``: role -> topic remaps.
    ``max_frames``: stop after this many frames (None: all). ``weights``: network
    weights (None: packaged). ``T_body_camera`` / ``T_camera_radar``: 4x4
    overrides of the bag's rig. ``map_window_m``: TSDF sliding-window radius
    (None keeps the whole map so the end-of-bag map can be scored against the
    whole route; the mapper node's default is 30 m). ``n_samples``: frames kept
    for the report.
    """

    mode: str = "gt"
    topics: Mapping[str, str] = field(default_factory=dict)
    max_frames: int | None = None
    weights: str | None = None
    T_body_camera: np.ndarray | None = None
    T_camera_radar: np.ndarray | None = None
    voxel_size: float = 0.10
    map_window_m: float | None = None
    n_samples: int = 4
    seed: int = 0
    progress: bool = True

    def __post_init__(self):
        if self.mode not in REPLAY_MODES:
            raise ValueError(f"mode must be one of {REPLAY_MODES}, got {self.mode!r}")
        mf = self.max_frames
        if mf is not None and (isinstance(mf, bool) or not isinstance(mf, int) or mf < 1):
            raise ValueError(f"max_frames must be an int >= 1 or None, got {mf!r}")
        if isinstance(self.n_samples, bool) or not isinstance(self.n_samples, int) or not 0 <= self.n_samples <= 16:
            raise ValueError(f"n_samples must be an int in [0, 16], got {self.n_samples!r}")

    @property
    def key_role(self) -> str:
        return "left" if self.mode in STEREO_MODES else "image"

    def required_roles(self) -> list[str]:
        """Roles the bag must have for this mode."""
        roles = ["left", "left_info", "right", "right_info"] if self.mode in STEREO_MODES else ["image", "camera_info"]
        if self.mode == "gt":
            roles.append("gt_depth")
        if self.mode == "mono-radar":
            roles.append("radar")
        return roles + ["odom"]

    def topic_map(self) -> dict[str, str | None]:
        """Remaps for :class:`BagSource`: user remaps, and roles this mode never reads switched off."""
        unused = []
        if self.mode not in STEREO_MODES:
            unused += ["right", "right_info"]
        if self.mode != "mono-radar":
            unused.append("radar")
        out: dict[str, str | None] = {r: None for r in unused}
        out.update(self.topics)
        return out


@dataclass
class ReplayResult:
    """Everything a replay produced: the metrics document plus arrays for the report."""

    metrics: dict
    per_frame: list[dict]
    latencies_ms: dict[str, np.ndarray]
    path_xyz: np.ndarray
    gt_path_xyz: np.ndarray | None
    surface_points: np.ndarray
    samples: list[dict]
    start: np.ndarray | None = None
    goal: np.ndarray | None = None

    @property
    def ground_truth(self) -> bool:
        return bool(self.metrics["ground_truth"])


# -- small pure helpers -----------------------------------------------------------------------

def radar_points(cloud, T_camera_radar: np.ndarray | None, camera_frame_id: str = "") -> np.ndarray | None:
    """Decoded radar :class:`~depth_nodes.eval.decode.Cloud` -> (N, 5) x, y, z, velocity, intensity, camera frame.

    Missing ``velocity`` / ``intensity`` fields are zero. Points already in the
    camera frame (``frame_id`` equal to the camera's) are not transformed.
    """
    if cloud is None:
        return None
    xyz = np.asarray(cloud.xyz, dtype=np.float32).reshape(-1, 3)
    names = cloud.fields.dtype.names or ()
    extra = [np.asarray(cloud.fields[n], np.float32) if n in names else np.zeros(len(xyz), np.float32)
             for n in ("velocity", "intensity")]
    pts = np.concatenate([xyz, np.stack(extra, axis=1).reshape(-1, 2)], axis=1)
    if T_camera_radar is not None and not (camera_frame_id and cloud.frame_id == camera_frame_id):
        pts[:, :3] = transform_points(T_camera_radar, xyz).astype(np.float32)
    return pts


def strided_points(depth: np.ndarray, camera, stride: int = PIXEL_STRIDE, max_depth: float | None = None) -> np.ndarray:
    """Optical-frame points (N, 3) of valid depth pixels on a ``stride`` grid (optionally <= ``max_depth``)."""
    d = np.asarray(depth, dtype=np.float32)
    rays = camera.rays()[::stride, ::stride]
    ds = d[::stride, ::stride]
    ok = np.isfinite(ds) & (ds > 0)
    if max_depth is not None:
        ok &= ds <= max_depth
    return rays[ok] * ds[ok][:, None]


def dedupe_by_voxel(points: np.ndarray, voxel_size: float) -> np.ndarray:
    """One point per ``voxel_size`` cell (the first seen), keeping real surface samples."""
    if len(points) == 0:
        return points.reshape(0, 3)
    keys = np.floor(points / voxel_size).astype(np.int64)
    _, first = np.unique(keys, axis=0, return_index=True)
    return points[np.sort(first)]


def frame_depth_stats(pred: np.ndarray, gt: np.ndarray | None) -> dict:
    """Per-frame figures: valid fraction always; abs_rel / rmse / delta1 / density with GT."""
    from depth_nodes.depth.metrics import depth_metrics

    out = {"valid_fraction": float(np.mean(np.isfinite(pred) & (pred > 0)))}
    if gt is not None:
        m = depth_metrics(pred, gt)
        out.update({k: m[k] for k in ("abs_rel", "rmse", "delta1", "density")})
    return out


def map_agreement(tsdf, depth: np.ndarray, camera, T_world_cam: np.ndarray, tolerance_m: float) -> dict | None:
    """Self-consistency of a depth frame with the map built so far (before integrating it).

    Returns ``known_fraction`` (share of strided depth points in observed map
    voxels), ``agreement`` (share of known ones with ``|sdf| <= tolerance_m``)
    and ``abs_sdf_m_median``; None when the frame has no valid pixel.
    """
    pts = strided_points(depth, camera)
    if len(pts) == 0:
        return None
    sdf, known = tsdf.query(transform_points(T_world_cam, pts))
    out = {"known_fraction": float(np.mean(known)), "agreement": None, "abs_sdf_m_median": None}
    if np.any(known):
        a = np.abs(sdf[known])
        out["agreement"] = float(np.mean(a <= tolerance_m))
        out["abs_sdf_m_median"] = float(np.median(a))
    return out


def _median(values) -> float | None:
    a = np.asarray([v for v in values if v is not None], dtype=np.float64)
    a = a[np.isfinite(a)]
    return float(np.median(a)) if a.size else None


def latency_summary(latencies_ms: Mapping[str, np.ndarray]) -> dict:
    """``{stage}_ms_median`` and ``{stage}_ms_p90`` for every stage with samples."""
    out = {}
    for stage, a in latencies_ms.items():
        a = np.asarray(a, dtype=np.float64)
        out[f"{stage}_ms_median"] = float(np.median(a)) if a.size else None
        out[f"{stage}_ms_p90"] = float(np.percentile(a, 90)) if a.size else None
    return out


# -- depth sources ----------------------------------------------------------------------------

class _Skip(Exception):
    """A frame that cannot be processed (the reason is counted, the replay goes on)."""


class DepthStage:
    """Depth for one frame from the configured source. ``camera`` is the depth image's camera."""

    def __init__(self, mode: str, weights=None, T_camera_radar: np.ndarray | None = None):
        self.mode = mode
        self.T_camera_radar = T_camera_radar
        self.estimator = None
        if mode != "gt":
            from depth_nodes.depth.interface import make_estimator

            self.estimator = make_estimator(mode, weights=weights)

    def __call__(self, frame) -> tuple[np.ndarray, Any]:
        camera = frame.camera_info
        if camera is None:
            raise _Skip("no camera_info")
        if self.mode == "gt":
            if frame.gt_depth is None:
                raise _Skip("no gt_depth")
            return camera.check_depth(frame.gt_depth, "ground_truth/depth"), camera
        from depth_nodes.depth.interface import DepthInput

        kw = {}
        if self.mode in STEREO_MODES:
            if frame.right is None or frame.right_info is None:
                raise _Skip("no right image")
            kw = {"right_rgb": frame.right, "right_camera": frame.right_info}
        elif self.mode == "mono-radar":
            kw = {"radar": radar_points(frame.radar, self.T_camera_radar, camera.frame_id)}
        try:
            inp = DepthInput(rgb=frame.image, camera=camera, **kw)
        except ValueError as exc:
            raise _Skip(f"bad input: {exc}") from None
        return self.estimator.estimate(inp).depth, camera


# -- the replay -------------------------------------------------------------------------------

def _sample_indices(expected: int, n: int) -> set[int]:
    if n <= 0 or expected <= 0:
        return set()
    return {int(round(x)) for x in np.linspace(0, expected - 1, min(n, expected))}


def _planner_window(pcfg) -> tuple[float, float, float]:
    reach = pcfg.library.horizon_s * pcfg.library.v_max + 2.0
    return (reach, reach, 2.5)


class _Replay:
    """State of one replay; :meth:`run` returns the :class:`ReplayResult`."""

    def __init__(self, bag, config: ReplayConfig):
        from depth_nodes.eval.bagio import BagSource
        from depth_nodes.eval.frames import first_payload
        from depth_nodes.mapping.config import TsdfConfig
        from depth_nodes.mapping.tsdf import TsdfMap
        from depth_nodes.planning.planner import PlannerConfig, PrimitivePlanner

        t0 = time.perf_counter()
        self.bag, self.cfg = Path(bag), config
        self.source = BagSource(bag, topics=config.topic_map())
        self.source.require(config.required_roles())
        self.info = self.source.info()
        rig = first_payload(self.source, "rig")
        self.ext = resolve_extrinsics(rig, config.T_body_camera, config.T_camera_radar)
        if config.mode == "mono-radar" and self.ext.T_camera_radar is None:
            LOG.warning("no sim/rig in the bag and no --radar-to-camera: radar points are assumed to be "
                        "in the camera optical frame (identity extrinsic)")
        self.depth_stage = DepthStage(config.mode, config.weights, self.ext.T_camera_radar)  # fails fast on weights
        self.world = None
        spec = first_payload(self.source, "world_spec")
        if spec is not None:
            from depth_nodes.sim.world import build_world

            try:
                self.world = build_world(spec)
            except (ValueError, TypeError) as exc:
                LOG.warning("sim/world_spec %s cannot be rebuilt (%s); no map/planner ground truth", spec, exc)
        self.has_gt = "gt_depth" in self.source.roles
        self.tsdf = TsdfMap(TsdfConfig(voxel_size=config.voxel_size, window_radius_m=config.map_window_m))
        self.pcfg = PlannerConfig()
        self.planner = PrimitivePlanner(self.pcfg)
        self.window = _planner_window(self.pcfg)
        self.blocks_dropped = 0
        self.goal = None if self.world is None else np.asarray(self.world.goal, dtype=np.float64)
        self.setup_s = time.perf_counter() - t0

    def run(self) -> ReplayResult:
        from depth_nodes.depth.metrics import DepthMetrics
        from depth_nodes.eval.frames import BagFrames
        from depth_nodes.eval.sync import SyncConfig
        from depth_nodes.planning.state import DepthFrame, VehicleState

        cfg = self.cfg
        frames = BagFrames(self.source, SyncConfig(key_role=cfg.key_role), progress=cfg.progress)
        counts = {t.topic: t.count for t in self.info.topics}
        expected = counts.get(self.source.roles[cfg.key_role], 0)
        if cfg.max_frames is not None:
            expected = min(expected, cfg.max_frames)
        keep = _sample_indices(expected, cfg.n_samples)
        lat: dict[str, list[float]] = {s: [] for s in STAGES}
        lat["eval"] = []
        per_frame: list[dict] = []
        depth_acc = DepthMetrics()
        skipped: dict[str, int] = {}
        path, gt_path, samples, gt_surface = [], [], [], []
        statuses: dict[str, int] = {}
        prev = None
        first_stamp = last_stamp = None
        n_frames = 0
        tol = 2.0 * cfg.voxel_size
        wall0 = tick = time.perf_counter()
        for frame in frames:
            t_read = (time.perf_counter() - tick) * 1e3
            if cfg.max_frames is not None and n_frames >= cfg.max_frames:
                break
            n_frames += 1
            first_stamp = frame.stamp_ns if first_stamp is None else first_stamp
            last_stamp = frame.stamp_ns
            stamp_s = (frame.stamp_ns - first_stamp) / 1e9
            try:
                if frame.pose is None:
                    raise _Skip("no odom pose")
                t0 = time.perf_counter()
                depth, camera = self.depth_stage(frame)
                t1 = time.perf_counter()
            except _Skip as exc:
                reason = str(exc).split(":")[0]
                skipped[reason] = skipped.get(reason, 0) + 1
                tick = time.perf_counter()
                continue
            T_wb = frame.pose
            T_wc = T_wb @ self.ext.T_body_camera
            gt = None
            if frame.gt_depth is not None and frame.gt_depth.shape == depth.shape:
                gt = camera.check_depth(frame.gt_depth, "ground_truth/depth")
            # evaluation that needs the map *before* this frame (excluded from the pipeline timings)
            te0 = time.perf_counter()
            consistency = map_agreement(self.tsdf, depth, camera, T_wc, tol) if self.tsdf.frames_integrated else None
            t_eval = time.perf_counter() - te0
            t2 = time.perf_counter()
            self.blocks_dropped += self.tsdf.integrate(depth, camera, T_wc).blocks_dropped
            t3 = time.perf_counter()
            pos = T_wb[:3, 3].copy()
            esdf = self.tsdf.esdf_window(pos, self.window, max_distance_m=ESDF_MAX_DISTANCE_M)
            t4 = time.perf_counter()
            vel = np.zeros(3) if prev is None or stamp_s <= prev[0] else (pos - prev[1]) / (stamp_s - prev[0])
            prev = (stamp_s, pos)
            state = VehicleState(pos=pos, vel=vel, acc=np.zeros(3), yaw=rot_to_yaw(T_wb[:3, :3]), stamp=stamp_s)
            plan = self.planner.plan(state, now=stamp_s, goal=self.goal, distance_field=esdf,
                                     depth_frame=DepthFrame(depth, camera, T_wc, stamp_s))
            t5 = time.perf_counter()
            for stage, ms in zip(STAGES, (t_read, (t1 - t0) * 1e3, (t3 - t2) * 1e3, (t4 - t3) * 1e3,
                                          (t5 - t4) * 1e3)):
                lat[stage].append(ms)
            te1 = time.perf_counter()
            row = {"frame": frame.index, "stamp_s": stamp_s, **frame_depth_stats(depth, gt),
                   "plan_status": plan.status.value,
                   "feasible": bool(np.any(plan.collision.feasible & ~plan.candidates.is_brake))}
            statuses[plan.status.value] = statuses.get(plan.status.value, 0) + 1
            if consistency is not None:
                row.update({f"map_{k}": v for k, v in consistency.items()})
            if self.world is not None:
                row["true_clearance_m"] = float(np.min(self.world.distance(plan.candidates.pos[plan.index])))
            if gt is not None:
                depth_acc.add(depth, gt)
                if self.world is not None:
                    T_gt = (frame.gt_pose if frame.gt_pose is not None else T_wb) @ self.ext.T_body_camera
                    pts = strided_points(gt, camera, max_depth=self.tsdf.config.depth_max)
                    gt_surface.append(transform_points(T_gt, pts).astype(np.float32))
                    if len(gt_surface) >= 50:
                        gt_surface = [dedupe_by_voxel(np.concatenate(gt_surface), cfg.voxel_size)]
            path.append(pos)
            if frame.gt_pose is not None:
                gt_path.append(frame.gt_pose[:3, 3].copy())
            if (n_frames - 1) in keep:
                samples.append({"rgb": frame.image, "pred": depth, "title": f"frame {frame.index}, t={stamp_s:.1f} s",
                                "gt": gt if gt is not None else np.full(depth.shape, np.nan, np.float32)})
            per_frame.append(row)
            lat["eval"].append((time.perf_counter() - te1 + t_eval) * 1e3)
            tick = time.perf_counter()
        wall = time.perf_counter() - wall0
        return self._finish(wall, n_frames, first_stamp, last_stamp, lat, per_frame, depth_acc, skipped,
                            path, gt_path, samples, gt_surface, statuses, frames.stats)

    def _finish(self, wall, n_frames, first_stamp, last_stamp, lat, per_frame, depth_acc, skipped, path,
                gt_path, samples, gt_surface, statuses, sync_stats) -> ReplayResult:
        from depth_nodes.mapping.metrics import reconstruction_metrics

        cfg = self.cfg
        t0 = time.perf_counter()
        if n_frames == 0:
            raise ValueError(f"bag {str(self.bag)!r}: no frame could be assembled on role {cfg.key_role!r} "
                             f"(topic {self.source.roles.get(cfg.key_role)!r})")
        processed = len(per_frame)
        stamps = [r["stamp_s"] for r in per_frame]
        period = float(np.median(np.diff(stamps))) if len(stamps) > 1 else 0.1
        span = (last_stamp - first_stamp) / 1e9 + period
        latencies = {k: np.asarray(v, dtype=np.float64) for k, v in lat.items()}
        pipeline = sum(latencies[s] for s in STAGES) if processed else np.zeros(0)
        latencies["frame"] = pipeline
        surface = self.tsdf.surface_points()[0]
        ts = self.tsdf.stats()
        metrics: dict[str, Any] = {
            "ground_truth": self.has_gt,
            "ground_truth_note": ("depth metrics against ground_truth/depth; map and planner against the rebuilt "
                                  "sim world" if self.has_gt and self.world is not None else
                                  "depth metrics against ground_truth/depth; no sim world for map/planner truth"
                                  if self.has_gt else
                                  "no ground truth in this bag: timing, coverage and self-consistency only"),
            "mode": cfg.mode, "bag": str(self.bag), "bag_duration_s": self.info.duration_s,
            "replayed_duration_s": span, "frames": n_frames, "frames_processed": processed,
            "frames_skipped": skipped, "replay_wall_s": wall, "setup_s": self.setup_s,
            "replay_wall_over_bag_duration": wall / span if span > 0 else None,
            "fps": n_frames / wall if wall > 0 else None,
        }
        metrics.update(latency_summary(latencies))
        valid = [r["valid_fraction"] for r in per_frame]
        metrics["coverage"] = {
            "valid_depth_fraction_mean": float(np.mean(valid)) if valid else None,
            "map_blocks": ts["blocks"], "map_voxels": ts["voxels"], "map_memory_mb": ts["memory_mb"],
            "map_surface_points": int(len(surface)),
            "frames_integrated": ts["frames_integrated"], "frames_rejected": ts["frames_rejected"],
            "map_blocks_dropped": self.blocks_dropped, "map_block_budget": ts["block_budget"],
            "map_window_m": cfg.map_window_m, "voxel_size_m": cfg.voxel_size,
        }
        metrics["self_consistency"] = {
            "map_known_fraction_median": _median(r.get("map_known_fraction") for r in per_frame),
            "map_agreement_median": _median(r.get("map_agreement") for r in per_frame),
            "map_abs_sdf_m_median": _median(r.get("map_abs_sdf_m_median") for r in per_frame),
            "agreement_tolerance_m": 2.0 * cfg.voxel_size,
        }
        feas = [r["feasible"] for r in per_frame]
        planner: dict[str, Any] = {"feasible_fraction": float(np.mean(feas)) if feas else None,
                                   "status_counts": statuses, "goal": None if self.goal is None else self.goal.tolist(),
                                   "robot_radius_m": self.pcfg.robot_radius}
        if self.world is not None and per_frame:
            clr = np.asarray([r["true_clearance_m"] for r in per_frame])
            planner.update(true_clearance_m_min=float(clr.min()), true_clearance_m_median=float(np.median(clr)),
                           true_collision_fraction=float(np.mean(clr < self.pcfg.robot_radius)))
        metrics["planner"] = planner
        metrics["depth"] = depth_acc.result() if self.has_gt else None
        metrics["map"] = None
        if self.world is not None and self.has_gt:
            gt_pts = dedupe_by_voxel(np.concatenate(gt_surface), cfg.voxel_size) if gt_surface else np.zeros((0, 3))
            metrics["map"] = reconstruction_metrics(surface, self.world.distance, gt_pts)
        metrics["extrinsics"] = {"source": self.ext.source, "T_body_camera": self.ext.T_body_camera.tolist(),
                                 "T_camera_radar": None if self.ext.T_camera_radar is None
                                 else self.ext.T_camera_radar.tolist()}
        metrics["sync"] = {k: v for k, v in sync_stats.items() if k != "roles"}
        metrics["roles"] = dict(self.source.roles)
        metrics["finalize_s"] = time.perf_counter() - t0
        start = None if self.world is None else np.asarray(self.world.start, dtype=np.float64)
        return ReplayResult(metrics=metrics, per_frame=per_frame, latencies_ms=latencies,
                            path_xyz=np.asarray(path, dtype=np.float64).reshape(-1, 3),
                            gt_path_xyz=np.asarray(gt_path, dtype=np.float64).reshape(-1, 3) if gt_path else None,
                            surface_points=surface, samples=samples, start=start, goal=self.goal)


def replay_bag(bag, config: ReplayConfig | None = None) -> ReplayResult:
    """Replay ``bag`` (rosbag2 directory or ``.mcap`` / ``.db3``) through depth -> TSDF -> ESDF -> planner.

    Raises:
        FileNotFoundError: the bag does not exist; trained weights are missing
            (:class:`~depth_nodes.depth.model_io.WeightsNotFoundError`, mono/stereo modes).
        ValueError: the bag lacks a role the mode needs (message lists the bag's topics), or no frame assembles.
    """
    return _Replay(bag, config or ReplayConfig()).run()
