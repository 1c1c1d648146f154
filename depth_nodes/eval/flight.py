"""Closed-loop flight harness: world + sensors + depth source + TSDF + planner + vehicle.

Everything runs in simulated time, deterministically per seed, with no ROS:

    every 1 / control_rate_hz seconds of simulated time
        render the camera at the vehicle's pose (and radar / right image if the
        depth source needs them) -> depth (GT or an estimator)
        integrate the depth into the TSDF at the camera pose
        build the local ESDF window over the box the candidate paths span
        every few steps, the goal guidance (geodesic cost-to-go around mapped obstacles)
        plan from the vehicle state with the ESDF, the newest depth frame and the guidance
        the vehicle tracks the chosen primitive for one control period
            (integrated at sim_dt; a collision ends the flight)

With ground-truth depth, pixels without a return count as free space up to
10 m; the planner keeps below a ceiling 2 m above the start height.

A trial succeeds when the vehicle gets within ``goal_tolerance_m`` of the goal
without a collision before ``max_time_s``.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from depth_nodes.depth.interface import MODES, STEREO_MODES, DepthInput

log = logging.getLogger(__name__)

DEPTH_SOURCES = ("gt",) + MODES

#: ESDF saturation distance (m): above the largest required clearance of any primitive.
ESDF_MAX_DISTANCE_M = 1.0
#: With ground-truth depth, NaN pixels count as free up to this range (m): see _planner_config.
GT_NO_RETURN_FREE_M = 10.0
#: Goal guidance (a 2-D geodesic cost-to-go, :func:`~depth_nodes.planning.guidance.guidance_from_map`
#: over the planner's altitude band; a cell is passable when it keeps a vertical gap of the
#: vehicle's clearance diameter, so doorways under lintels stay open): rebuilt every this many steps.
GUIDANCE_EVERY_N = 5
#: Flight ceiling above the start height (m): keeps the vehicle out of forest canopies,
#: where an estimated depth that misses a crown ends the flight.
CEILING_ABOVE_START_M = 2.0


@dataclass(frozen=True)
class FlightConfig:
    """One closed-loop trial. Speeds in m/s, times in s, distances in m."""

    world: str = "forest"
    density: str | float = "medium"
    seed: int = 100
    extent: tuple[float, float] | None = None   # world (length, width) in m; None: the kind's default
    speed: float = 3.0
    depth: str = "gt"
    control_rate_hz: float = 10.0
    sim_dt: float = 0.02
    max_time_s: float | None = None          # None: 3x the straight-line time + 20 s
    goal_tolerance_m: float = 1.0
    robot_radius: float = 0.25
    margin: float = 0.15
    voxel_size: float = 0.10
    horizon_m: float = 6.0                   # primitive length at full speed (sets horizon_s)
    record_path: bool = True
    depth_options: dict | None = None        # estimator options (make_estimator), e.g. {"refine": True}
    weights: str | None = None               # the depth network's .safetensors (None: the packaged one)

    def __post_init__(self):
        if self.depth not in DEPTH_SOURCES:
            raise ValueError(f"depth must be one of {DEPTH_SOURCES}, got {self.depth!r}")
        if self.depth_options:
            from depth_nodes.depth.interface import ESTIMATOR_OPTIONS

            allowed = ESTIMATOR_OPTIONS.get(self.depth, set())
            unknown = sorted(set(self.depth_options) - allowed)
            if unknown:
                raise ValueError(f"depth options {unknown} do not apply to depth {self.depth!r}; "
                                 f"allowed: {sorted(allowed)}")
        if self.weights is not None:
            from depth_nodes.depth.model_io import MODEL_FOR_MODE

            if self.depth not in MODEL_FOR_MODE:
                raise ValueError(f"depth {self.depth!r} has no network: weights do not apply")
            if not Path(self.weights).is_file():
                raise ValueError(f"weights {self.weights} not found")
        for name in ("speed", "control_rate_hz", "sim_dt", "goal_tolerance_m", "robot_radius", "voxel_size",
                     "horizon_m"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"flight {name} must be finite and > 0, got {v}")
        if self.speed > 15.0:
            raise ValueError(f"flight speed must be <= 15 m/s, got {self.speed}")
        if self.sim_dt > 1.0 / self.control_rate_hz:
            raise ValueError(f"sim_dt {self.sim_dt} must not exceed the control period {1 / self.control_rate_hz}")


@dataclass
class FlightResult:
    config: dict
    success: bool
    collided: bool
    timed_out: bool
    time_s: float
    path_length_m: float
    mean_speed_m_s: float
    min_clearance_m: float
    plan_ms: list = field(default_factory=list)
    map_ms: list = field(default_factory=list)
    depth_ms: list = field(default_factory=list)
    integrate_ms: list = field(default_factory=list)
    esdf_ms: list = field(default_factory=list)
    # process CPU time of the same steps: robust to other processes competing for the cores
    plan_cpu_ms: list = field(default_factory=list)
    integrate_cpu_ms: list = field(default_factory=list)
    esdf_cpu_ms: list = field(default_factory=list)
    guidance_ms: list = field(default_factory=list)      # only the steps that rebuild the guidance
    guidance_cpu_ms: list = field(default_factory=list)
    plan_stage_ms: dict = field(default_factory=dict)   # planner stage name -> per-step ms
    statuses: dict = field(default_factory=dict)
    path: np.ndarray | None = None
    goal: np.ndarray | None = None
    start: np.ndarray | None = None
    end_reason: str = ""
    wall_s: float = 0.0
    end_distance_to_goal_m: float = float("nan")   # where a timeout left the vehicle

    def summary(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k not in ("path", "goal", "start", *_SERIES, "plan_stage_ms")}
        for name in _SERIES:
            d[f"{name}_median"] = _median(getattr(self, name))
        for stage, values in self.plan_stage_ms.items():
            d[f"plan_{stage}_ms_median"] = _median(values)
        return d


#: Per-step latency series of a :class:`FlightResult` (ms; wall time, ``*_cpu_ms`` process CPU time).
_SERIES = ("plan_ms", "map_ms", "depth_ms", "integrate_ms", "esdf_ms", "plan_cpu_ms", "integrate_cpu_ms",
           "esdf_cpu_ms", "guidance_ms", "guidance_cpu_ms")


def _median(values) -> float:
    return float(np.median(values)) if len(values) else float("nan")


class DepthSource:
    """Depth for the planner and map: rendered ground truth or an estimator on rendered images."""

    def __init__(self, mode: str, suite, options: dict | None = None, weights: str | None = None):
        self.mode, self.suite = mode, suite
        self.estimator = None
        if mode != "gt":
            from depth_nodes.depth.interface import make_estimator

            self.estimator = make_estimator(mode, weights=weights, **(options or {}))
        # NaN means "nothing within range" for the renderer's ground truth and for estimators that say so
        self.no_return_is_far = self.estimator is None or self.estimator.no_return_is_far

    def __call__(self, T_world_body, v_world, rng) -> tuple[np.ndarray, np.ndarray]:
        """(depth (H, W) float32 metres, T_world_cam) at the body pose."""
        suite = self.suite
        rig = suite.rig
        T_wc = T_world_body @ rig.T_body_camera
        if self.mode == "gt":
            return suite.camera.depth(T_wc), T_wc
        from depth_nodes.sim.radar import transform_radar_points

        stereo = self.mode in STEREO_MODES
        radar = self.mode == "mono-radar"
        frame = suite.render(T_world_body, v_world, rng, stereo=stereo, radar=radar)
        radar_cam = None
        if radar and frame.radar is not None:
            radar_cam = transform_radar_points(frame.radar.points, rig.T_camera_radar)
        inp = DepthInput(rgb=frame.rgb, camera=rig.camera, radar=radar_cam,
                         right_rgb=frame.right if stereo else None,
                         right_camera=rig.right_camera if stereo else None)
        return self.estimator.estimate(inp).depth, frame.T_world_cam


def _planner_config(cfg: FlightConfig, start_z: float = 1.5, no_return_is_far: bool | None = None):
    from depth_nodes.planning.planner import PlannerConfig
    from depth_nodes.planning.primitives import PrimitiveLibraryConfig

    v = cfg.speed
    speeds = tuple(sorted({round(v * f, 3) for f in (0.25, 0.5, 0.75, 1.0)}))
    horizon_s = float(np.clip(cfg.horizon_m / v, 1.0, 3.0))
    library = PrimitiveLibraryConfig(speeds=speeds, v_max=v * 1.1, horizon_s=horizon_s)
    # the ground-truth renderer returns NaN only where a ray hits nothing at all: like a
    # depth camera with a 10 m range, such pixels have seen free space that far; so has an
    # estimator whose NaN means "beyond range" (the stereo network), unlike SGBM's holes
    if no_return_is_far is None:
        no_return_is_far = cfg.depth == "gt"
    return PlannerConfig(robot_radius=cfg.robot_radius, margin=cfg.margin, library=library,
                         no_return_free_m=GT_NO_RETURN_FREE_M if no_return_is_far else 0.0,
                         max_altitude=start_z + CEILING_ABOVE_START_M,
                         depth_timeout_s=3.0 / cfg.control_rate_hz, odom_timeout_s=3.0 / cfg.control_rate_hz)


def run_flight(cfg: FlightConfig) -> FlightResult:
    """Fly one trial; deterministic in ``cfg``."""
    from depth_nodes.mapping.config import TsdfConfig
    from depth_nodes.mapping.tsdf import TsdfMap
    from depth_nodes.planning.guidance import guidance_from_map
    from depth_nodes.planning.planner import PrimitivePlanner
    from depth_nodes.planning.state import DepthFrame
    from depth_nodes.planning.state import VehicleState as PlanState
    from depth_nodes.sim.rig import SensorRig
    from depth_nodes.sim.suite import SensorSuite
    from depth_nodes.sim.vehicle import Vehicle
    from depth_nodes.sim.world import WorldSpec, build_world

    wall0 = time.perf_counter()
    world = build_world(WorldSpec(cfg.world, cfg.seed, cfg.density, cfg.extent))
    rig = SensorRig()
    suite = SensorSuite(world, rig)
    depth_source = DepthSource(cfg.depth, suite, cfg.depth_options, cfg.weights)
    pcfg = _planner_config(cfg, float(world.start[2]), no_return_is_far=depth_source.no_return_is_far)
    planner = PrimitivePlanner(pcfg)
    clearance = pcfg.robot_radius + pcfg.margin
    z_band = (pcfg.min_altitude, pcfg.max_altitude)  # both set by _planner_config
    reach = pcfg.library.horizon_s * cfg.speed + 2.0
    tsdf = TsdfMap(TsdfConfig(voxel_size=cfg.voxel_size, window_radius_m=max(20.0, 1.5 * reach)))
    start, goal = world.start.copy(), world.goal.copy()
    heading = float(np.arctan2(goal[1] - start[1], goal[0] - start[0]))
    vehicle = Vehicle(world, start, yaw=heading, max_vel=cfg.speed * 1.2, max_acc=pcfg.library.a_max * 1.25,
                      radius=cfg.robot_radius)
    straight = float(np.linalg.norm(goal - start))
    max_time = cfg.max_time_s if cfg.max_time_s is not None else 3.0 * straight / cfg.speed + 20.0
    rng = np.random.default_rng([cfg.seed, 7])
    period = 1.0 / cfg.control_rate_hz
    n_sub = max(1, int(round(period / cfg.sim_dt)))
    dt = period / n_sub

    path = [start.copy()]
    series = {name: [] for name in _SERIES}
    statuses, plan_stage_ms = {}, {}
    t = 0.0
    end_reason = "timeout"
    success = collided = False
    while t < max_time:
        s = vehicle.state
        T_wb = vehicle.pose
        w0 = time.perf_counter()
        depth, T_wc = depth_source(T_wb, s.vel, rng)
        w1, c1 = time.perf_counter(), time.process_time()
        tsdf.integrate(depth, rig.camera, T_wc)
        w2, c2 = time.perf_counter(), time.process_time()
        state = PlanState(pos=s.pos, vel=s.vel, acc=s.acc, yaw=s.yaw, stamp=t)
        # the distance window covers exactly the candidate paths (+ the saturation distance);
        # generating them here is counted in the planner's time
        lo, hi = planner.path_bounds(state, goal, pad=ESDF_MAX_DISTANCE_M)
        w3, c3 = time.perf_counter(), time.process_time()
        esdf = tsdf.esdf_window(0.5 * (lo + hi), np.maximum(0.5 * (hi - lo), cfg.voxel_size),
                                max_distance_m=ESDF_MAX_DISTANCE_M)
        w4, c4 = time.perf_counter(), time.process_time()
        rebuild = len(series["plan_ms"]) % GUIDANCE_EVERY_N == 0
        if rebuild:
            guidance = guidance_from_map(tsdf, s.pos, goal, cfg.robot_radius, z_band, 2.0 * clearance)
        w5, c5 = time.perf_counter(), time.process_time()
        if rebuild:
            series["guidance_ms"].append((w5 - w4) * 1e3)
            series["guidance_cpu_ms"].append((c5 - c4) * 1e3)
        result = planner.plan(state, now=t, goal=goal, distance_field=esdf,
                              depth_frame=DepthFrame(depth, rig.camera, T_wc, t), guidance=guidance)
        c6 = time.process_time()
        for name, value in (("depth_ms", w1 - w0), ("integrate_ms", w2 - w1), ("esdf_ms", w4 - w3),
                            ("map_ms", w2 - w1 + w4 - w3), ("integrate_cpu_ms", c2 - c1),
                            ("esdf_cpu_ms", c4 - c3), ("plan_cpu_ms", c3 - c2 + c6 - c5)):
            series[name].append(value * 1e3)
        series["plan_ms"].append(result.timings_ms["total"])
        for stage, ms in result.timings_ms.items():
            if stage != "total":
                plan_stage_ms.setdefault(stage, []).append(ms)
        statuses[result.status.value] = statuses.get(result.status.value, 0) + 1
        vehicle.follow(result.trajectory)
        for _ in range(n_sub):
            st = vehicle.step(dt)
            path.append(st.pos.copy())
            if st.collided:
                break
        t = vehicle.state.t
        if vehicle.state.collided:
            collided, end_reason = True, f"collision at {np.round(vehicle.state.pos, 2).tolist()}"
            break
        if np.linalg.norm(vehicle.state.pos - goal) <= cfg.goal_tolerance_m:
            success, end_reason = True, "goal reached"
            break
    path_arr = np.asarray(path)
    seg = np.linalg.norm(np.diff(path_arr, axis=0), axis=1)
    length = float(seg.sum())
    clearance = float(np.min(world.distance(path_arr.astype(np.float32)))) if len(path_arr) else float("nan")
    return FlightResult(
        config=asdict(cfg), success=success, collided=collided, timed_out=not (success or collided),
        time_s=float(t), path_length_m=length, mean_speed_m_s=length / t if t > 0 else 0.0,
        min_clearance_m=clearance, plan_stage_ms=plan_stage_ms, statuses=statuses, **series,
        path=path_arr if cfg.record_path else None, goal=goal, start=start, end_reason=end_reason,
        wall_s=time.perf_counter() - wall0,
        end_distance_to_goal_m=float(np.linalg.norm(vehicle.state.pos - goal)))


def _run_one(cfg: FlightConfig) -> FlightResult:
    return run_flight(cfg)


def run_trials(configs: list[FlightConfig], workers: int = 1, progress: bool = True) -> list[FlightResult]:
    """Run trials, in parallel processes when ``workers`` > 1; results in input order."""
    from tqdm import tqdm

    if workers <= 1:
        return [run_flight(c) for c in tqdm(configs, desc="flights", unit="trial", disable=not progress)]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as ex:
        return list(tqdm(ex.map(_run_one, configs), total=len(configs), desc="flights", unit="trial",
                         disable=not progress))


def aggregate(results: list[FlightResult]) -> dict:
    """Success/collision rates and medians over trials of one setting."""
    n = len(results)

    def pooled(name: str) -> float:
        return _median(np.concatenate([getattr(r, name) for r in results])) if n else float("nan")

    stages = sorted({s for r in results for s in r.plan_stage_ms})
    return {
        "trials": n,
        "success_rate": sum(r.success for r in results) / n if n else float("nan"),
        "collision_rate": sum(r.collided for r in results) / n if n else float("nan"),
        "timeout_rate": sum(r.timed_out for r in results) / n if n else float("nan"),
        "mean_speed_m_s": float(np.mean([r.mean_speed_m_s for r in results])) if n else float("nan"),
        "min_clearance_m": float(np.min([r.min_clearance_m for r in results])) if n else float("nan"),
        "mean_time_s": float(np.mean([r.time_s for r in results])) if n else float("nan"),
        "wall_s_total": float(sum(r.wall_s for r in results)),
        **{f"{name}_median": pooled(name) for name in _SERIES},
        **{f"plan_{s}_ms_median": _median(np.concatenate([r.plan_stage_ms.get(s, []) for r in results]))
           for s in stages},
        "failures": [f"seed {r.config['seed']}: {r.end_reason}" for r in results if not r.success],
    }
