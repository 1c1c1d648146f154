"""Cost of each primitive and the choice among the feasible ones (with hysteresis).

Every cost term is dimensionless and roughly in [0, 1] (progress in [-1, 1]),
so the weights in :class:`CostWeights` compare like with like.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from depth_nodes.planning.collision import CollisionResult
from depth_nodes.planning.primitives import PrimitiveSet


@dataclass(frozen=True)
class CostWeights:
    """Weights of the cost terms; ``clearance_preferred`` (m) is the clearance beyond
    the required one above which clearance costs nothing."""

    progress: float = 1.0
    clearance: float = 0.3
    smoothness: float = 0.2
    fov: float = 0.3
    unknown: float = 0.5       # only with the 'penalty' unknown policy
    climb: float = 0.05
    stop: float = 0.3          # braking to a stop short of the goal (escapes local minima)
    clearance_preferred: float = 1.0

    def __post_init__(self):
        for name, v in self.__dict__.items():
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f"cost weight {name} must be finite and >= 0, got {v}")
        if self.clearance_preferred <= 0:
            raise ValueError(f"clearance_preferred must be > 0, got {self.clearance_preferred}")


def primitive_costs(prims: PrimitiveSet, check: CollisionResult, *, start_yaw: float,
                    goal: np.ndarray | None, ref_end_vel: np.ndarray, weights: CostWeights,
                    v_max: float, fov_half_angle: float, penalise_unknown: bool,
                    cost_to_go=None) -> dict[str, np.ndarray]:
    """(P,) cost terms and their weighted ``total``.

    * progress: with a goal, the change of distance to the goal from the start
      to the primitive's end (the ``cost_to_go(points) -> metres`` when given,
      e.g. a :class:`~depth_nodes.planning.guidance.GoalGuidance`, else the
      straight line); without one, minus the forward progress along the
      start heading; both divided by the farthest reachable distance.
    * clearance: shortfall of the observed clearance below required + preferred.
    * smoothness: change of the end velocity from ``ref_end_vel`` (the previous
      choice, or the current velocity).
    * fov: fraction of moving samples whose direction of motion is outside the
      camera's horizontal half field of view around the yaw.
    * unknown: fraction of unknown samples (when ``penalise_unknown``).
    * climb: |climb rate| relative to ``v_max``.
    * stop: 1 for brake primitives (the planner brakes at the goal without it).
    """
    reach = max(v_max * float(prims.t[-1]), 1e-6)
    start, end = prims.pos[:, 0], prims.pos[:, -1]
    if goal is not None and cost_to_go is not None:
        progress = (np.asarray(cost_to_go(end), dtype=np.float64) - cost_to_go(start[:1])[0]) / reach
    elif goal is not None:
        progress = (np.linalg.norm(end - goal, axis=1) - np.linalg.norm(start - goal, axis=1)) / reach
    else:
        heading = np.array([np.cos(start_yaw), np.sin(start_yaw), 0.0])
        progress = -((end - start) @ heading) / reach
    spare = check.min_clearance - check.required  # +inf when no obstacle was observed
    clearance = np.clip(1.0 - spare / weights.clearance_preferred, 0.0, 1.0)
    smoothness = np.linalg.norm(prims.end_vel - ref_end_vel, axis=1) / (2.0 * v_max)
    fov = (prims.heading_error > fov_half_angle).sum(axis=1) / max(prims.n_samples, 1)
    unknown = check.unknown_fraction if penalise_unknown else np.zeros(len(prims))
    climb = np.abs(prims.climb_rate) / v_max
    stop = prims.is_brake.astype(np.float64)
    w = weights
    total = (w.progress * progress + w.clearance * clearance + w.smoothness * smoothness
             + w.fov * fov + w.unknown * unknown + w.climb * climb + w.stop * stop)
    return {"progress": progress, "clearance": clearance, "smoothness": smoothness, "fov": fov,
            "unknown": unknown, "climb": climb, "stop": stop, "total": total}


def best_brake(prims: PrimitiveSet, check: CollisionResult) -> int:
    """Index of the brake to command: feasible first, then most clearance, then hardest."""
    idx = np.flatnonzero(prims.is_brake)
    if idx.size == 0:
        raise ValueError("the primitive set has no brake primitive (include_brake=False)")
    order = np.lexsort((prims.stop_time[idx], -check.min_clearance[idx], ~check.feasible[idx]))
    return int(idx[order[0]])


def select(prims: PrimitiveSet, check: CollisionResult, total: np.ndarray, *,
           prev_end_vel: np.ndarray | None, hysteresis: float, family_tol: float) -> int:
    """Lowest-cost feasible primitive, or -1 when none is feasible.

    Hysteresis: the feasible non-brake primitive whose end velocity is closest
    to ``prev_end_vel`` (within ``family_tol`` m/s) continues the previous
    choice and is kept unless the best one is cheaper by more than ``hysteresis``.
    """
    feasible = np.flatnonzero(check.feasible)
    if feasible.size == 0:
        return -1
    best = int(feasible[np.argmin(total[feasible])])
    if prev_end_vel is None:
        return best
    same_family = feasible[~prims.is_brake[feasible]]
    if same_family.size == 0:
        return best
    gap = np.linalg.norm(prims.end_vel[same_family] - prev_end_vel, axis=1)
    same = int(same_family[np.argmin(gap)])
    if gap.min() <= family_tol and total[same] - total[best] <= hysteresis:
        return same
    return best
