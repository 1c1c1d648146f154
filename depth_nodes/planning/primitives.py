"""Motion-primitive library: minimum-jerk polynomials fanned around the current heading.

From the current state (position, velocity, acceleration, yaw) each primitive
is the minimum-jerk trajectory of duration ``horizon_s`` that ends with a
velocity fanned over yaw offsets (about the current heading), climb rates and
horizontal speeds, and zero acceleration. The end position is left free, which
makes the optimum the quintic whose end position is
``p0 + T (v0 + v1) / 2 + T^2 (a0 - a1) / 12`` (its fifth-order term vanishes).
For a fixed duration the quintic is linear in its boundary values, so its basis
at the sample times is precomputed once and every primitive of a state is one
matrix product.

Brake primitives decelerate to rest with peak deceleration <= a fraction of
``a_max`` along the current line of motion (same free-end minimum-jerk form,
end velocity and acceleration zero, duration searched per state) and then hold.

All outputs are world frame (``map``, z up); yaw starts at the state's yaw
wrapped to [-pi, pi], then follows the horizontal velocity direction with a
yaw-rate limit (continuous, not re-wrapped, along a primitive).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from depth_nodes.planning import kernels
from depth_nodes.planning.state import VehicleState

#: Horizontal speed (m/s) below which yaw holds instead of following velocity.
YAW_HOLD_SPEED = 0.05


@dataclass(frozen=True)
class PrimitiveLibraryConfig:
    """Shape of the primitive fan and the dynamic limits (SI units, angles in degrees)."""

    n_yaw: int = 25                     # yaw offsets, evenly over +-yaw_half_span_deg
    yaw_half_span_deg: float = 90.0
    n_climb: int = 5                    # climb rates, evenly over +-climb_rate_max
    climb_rate_max: float = 1.0         # m/s
    speeds: tuple[float, ...] = (0.5, 1.0, 2.0, 3.0)  # horizontal end speeds, m/s
    horizon_s: float = 2.0
    dt: float = 0.1                     # sample spacing, s
    v_max: float = 3.5                  # m/s, norm of velocity
    a_max: float = 4.0                  # m/s^2, norm of acceleration
    yaw_rate_max_deg_s: float = 120.0
    include_brake: bool = True
    brake_fractions: tuple[float, ...] = (1.0, 0.5)  # brake decelerations as fractions of a_max
    n_tail: int | None = None           # stopping-tail points after the horizon (0: none; None: see below)

    def __post_init__(self):
        if self.n_tail is None:
            object.__setattr__(self, "n_tail", self.auto_n_tail())
        for name, v, lo in (("n_yaw", self.n_yaw, 1), ("n_climb", self.n_climb, 1), ("n_tail", self.n_tail, 0)):
            if int(v) != v or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v}")
        pos = {"horizon_s": self.horizon_s, "dt": self.dt, "v_max": self.v_max,
               "a_max": self.a_max, "yaw_rate_max_deg_s": self.yaw_rate_max_deg_s}
        for name, v in pos.items():
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be finite and > 0, got {v}")
        if not 0.0 <= self.yaw_half_span_deg <= 180.0:
            raise ValueError(f"yaw_half_span_deg must be in [0, 180], got {self.yaw_half_span_deg}")
        if not (np.isfinite(self.climb_rate_max) and self.climb_rate_max >= 0):
            raise ValueError(f"climb_rate_max must be finite and >= 0, got {self.climb_rate_max}")
        sp = np.asarray(self.speeds, dtype=np.float64)
        if sp.ndim != 1 or sp.size < 1 or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
            raise ValueError(f"speeds must be a non-empty list of positive numbers, got {self.speeds}")
        br = np.asarray(self.brake_fractions, dtype=np.float64)
        if self.include_brake and (br.ndim != 1 or br.size < 1 or np.any(br <= 0) or np.any(br > 1)):
            raise ValueError(f"brake_fractions must be in (0, 1], got {self.brake_fractions}")
        if self.dt > self.horizon_s:
            raise ValueError(f"dt ({self.dt}) must not exceed horizon_s ({self.horizon_s})")

    @property
    def n_samples(self) -> int:
        return int(round(self.horizon_s / self.dt)) + 1

    def auto_n_tail(self) -> int:
        """Tail points so that the stop from ``v_max`` (0.75 v^2 / a long, at the hardest
        brake) is sampled no coarser than a full-speed step ``v_max * dt``: coarse tails
        inflate the required clearance (half the longest step) of every fast primitive."""
        frac = max(self.brake_fractions) if self.include_brake and len(self.brake_fractions) else 1.0
        if not all(np.isfinite(x) and x > 0 for x in (self.v_max, self.a_max, self.dt, frac)):
            return 5  # invalid limits are reported by the checks below
        return int(np.clip(np.ceil(0.75 * self.v_max / (frac * self.a_max * self.dt)), 1, 64))


@dataclass(frozen=True)
class PrimitiveSet:
    """All primitives generated for one state; P primitives x S samples.

    ``t`` (S,) seconds from the state's stamp; ``pos``/``vel``/``acc`` (P, S, 3)
    world frame; ``yaw`` (P, S) radians. Per primitive: ``end_vel`` (P, 3) the
    commanded end velocity, ``yaw_offset`` (rad, relative to the start yaw),
    ``climb_rate`` and ``speed`` (m/s, 0 for brakes), ``is_brake``, ``is_goal``
    (the primitive that stops at the goal) and ``stop_time`` (s; time to rest
    for brakes, inf otherwise). ``tail`` (P, K, 3) are points on the straight
    stop (min-jerk, at the hardest brake deceleration) from each primitive's
    end state: a primitive is only safe if the vehicle can still stop after it.
    ``heading_error`` (P, S) rad is the angle between the horizontal direction of
    motion and the yaw (0 while hovering). ``report`` counts generated and
    discarded (limit-violating) primitives.
    """

    t: np.ndarray
    pos: np.ndarray
    vel: np.ndarray
    acc: np.ndarray
    yaw: np.ndarray
    end_vel: np.ndarray
    yaw_offset: np.ndarray
    climb_rate: np.ndarray
    speed: np.ndarray
    is_brake: np.ndarray
    is_goal: np.ndarray
    stop_time: np.ndarray
    tail: np.ndarray
    heading_error: np.ndarray
    report: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.pos.shape[0])

    @property
    def n_samples(self) -> int:
        return int(self.t.size)


def _monomials(t: np.ndarray, derivative: int) -> np.ndarray:
    """(S, 6) rows d^k/dt^k [1, t, ..., t^5] at times ``t``."""
    out = np.zeros((t.size, 6))
    for n in range(derivative, 6):
        coef = np.prod(np.arange(n - derivative + 1, n + 1)) if derivative else 1.0
        out[:, n] = coef * t ** (n - derivative)
    return out


def quintic_basis(t: np.ndarray, T: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Position/velocity/acceleration bases (S, 6) at ``t`` for a quintic of duration ``T``.

    ``pos(t) = B_pos @ [p0, v0, a0, p1, v1, a1]`` (one column of boundary values per axis).
    """
    ends = np.array([0.0, T])
    A = np.vstack([_monomials(ends[:1], 0), _monomials(ends[:1], 1), _monomials(ends[:1], 2),
                   _monomials(ends[1:], 0), _monomials(ends[1:], 1), _monomials(ends[1:], 2)])
    A_inv = np.linalg.inv(A)
    return tuple(_monomials(t, k) @ A_inv for k in range(3))


def free_end_position(p0, v0, a0, v1, a1, T):
    """End position of the minimum-jerk trajectory with free end position."""
    return p0 + 0.5 * T * (v0 + v1) + (T * T / 12.0) * (a0 - a1)


def wrap_angle(a):
    """Angle(s) wrapped to [-pi, pi]."""
    return np.arctan2(np.sin(a), np.cos(a))


def yaw_following_velocity(vel: np.ndarray, yaw0: float, dt: float,
                           yaw_rate_max: float) -> tuple[np.ndarray, np.ndarray]:
    """(P, S) yaw that turns toward the horizontal velocity direction at <= ``yaw_rate_max`` rad/s,
    and (P, S) heading error: |direction of motion - yaw| in [0, pi] rad (0 while holding).

    Holds the previous yaw while the horizontal speed is below ``YAW_HOLD_SPEED``.
    """
    return kernels.follow_yaw(np.ascontiguousarray(vel, dtype=np.float64), float(yaw0),
                              float(yaw_rate_max * dt), YAW_HOLD_SPEED)


class PrimitiveLibrary:
    """Generates the primitive fan plus brake primitives for a state, vectorised."""

    def __init__(self, config: PrimitiveLibraryConfig | None = None):
        self.config = cfg = config or PrimitiveLibraryConfig()
        S = cfg.n_samples
        self.t = np.linspace(0.0, (S - 1) * cfg.dt, S)
        self.T = float(self.t[-1])
        # (6, 3 S): boundary values -> position, velocity and acceleration samples
        self._basis = np.ascontiguousarray(np.concatenate(quintic_basis(self.t, self.T)).T)
        half = np.radians(cfg.yaw_half_span_deg)
        yaw_off = np.linspace(-half, half, cfg.n_yaw) if cfg.n_yaw > 1 else np.zeros(1)
        climb = np.linspace(-cfg.climb_rate_max, cfg.climb_rate_max, cfg.n_climb) if cfg.n_climb > 1 else np.zeros(1)
        Y, C, V = np.meshgrid(yaw_off, climb, np.asarray(cfg.speeds, dtype=np.float64), indexing="ij")
        self._yaw_offset, self._climb, self._speed = Y.ravel(), C.ravel(), V.ravel()
        self._brake_fractions = np.asarray(cfg.brake_fractions if cfg.include_brake else (), dtype=np.float64)
        # candidate brake durations (s), shortest first; peak deceleration is checked on a fine grid
        self._brake_T = np.geomspace(0.05, 30.0, 160)
        self._brake_tau = np.linspace(0.0, 1.0, 33)

    def generate(self, state: VehicleState, goal: np.ndarray | None = None) -> PrimitiveSet:
        """All primitives from ``state`` with limit-violating ones discarded (see ``report``).

        With a ``goal`` (3,) closer than ``v_max * horizon_s / 2`` one more
        primitive comes to rest exactly at the goal (flagged in ``is_goal``).
        """
        cfg = self.config
        p0, v0, a0 = state.pos, state.vel, state.acc
        heading = state.yaw + self._yaw_offset
        yaw_off, climb, speed = self._yaw_offset, self._climb, self._speed
        v1 = np.stack([speed * np.cos(heading), speed * np.sin(heading), climb], axis=1)
        a1 = np.zeros_like(v1)
        p1 = free_end_position(p0, v0, a0, v1, a1, self.T)
        is_goal = np.zeros(v1.shape[0], dtype=bool)
        if goal is not None and np.linalg.norm(goal - p0) <= 0.5 * cfg.v_max * self.T:
            yaw_off = np.append(yaw_off, wrap_angle(np.arctan2(goal[1] - p0[1], goal[0] - p0[0]) - state.yaw))
            climb, speed = np.append(climb, 0.0), np.append(speed, 0.0)
            v1, a1 = np.vstack([v1, np.zeros(3)]), np.vstack([a1, np.zeros(3)])
            p1 = np.vstack([p1, goal])
            is_goal = np.append(is_goal, True)
        n = v1.shape[0]
        bound = np.empty((n, 6, 3))
        bound[:, 0], bound[:, 1], bound[:, 2] = p0, v0, a0
        bound[:, 3], bound[:, 4], bound[:, 5] = p1, v1, a1
        # limits: never demand more than the limit or than the vehicle already has
        v_lim = max(cfg.v_max, float(np.linalg.norm(v0))) + 1e-6
        a_lim = max(cfg.a_max, float(np.linalg.norm(a0))) + 1e-6
        B = self._brake_fractions.size
        # one GEMM for every primitive, axis and derivative: (n * 3, 6) @ (6, 3 S)
        samples = (bound.transpose(0, 2, 1).reshape(n * 3, 6) @ self._basis).reshape(n, 3, 3, self.t.size)
        # the kept fan primitives, then B rows for the brakes
        pos, vel, acc, v_bad, a_bad = kernels.select_fan(samples, v_lim * v_lim, a_lim * a_lim, B)
        keep = ~(v_bad | a_bad)
        m = int(keep.sum())
        report = {"n_fan": int(n - is_goal.sum()), "n_goal": int(is_goal.sum()),
                  "n_discarded_velocity": int(v_bad.sum()),
                  "n_discarded_acceleration": int((a_bad & ~v_bad).sum())}
        stop_time = np.full(m + B, np.inf)
        if B:
            stop_time[m:] = self._brakes(state, pos[m:], vel[m:], acc[m:])

        def pad(x: np.ndarray) -> np.ndarray:  # the kept fan rows, then zeros for the brakes
            return np.concatenate([x[keep], np.zeros((B,) + x.shape[1:], x.dtype)])

        is_brake = np.zeros(m + B, bool)
        is_brake[m:] = True
        yaw, heading_error = yaw_following_velocity(vel, float(wrap_angle(state.yaw)), cfg.dt,
                                                    np.radians(cfg.yaw_rate_max_deg_s))
        report["n_brake"] = int(B)
        report["n_primitives"] = int(m + B)
        return PrimitiveSet(t=self.t, pos=pos, vel=vel, acc=acc, yaw=yaw, end_vel=pad(v1),
                            yaw_offset=pad(yaw_off), climb_rate=pad(climb), speed=pad(speed), is_brake=is_brake,
                            is_goal=pad(is_goal), stop_time=stop_time, tail=self._tails(pos[:, -1], vel[:, -1]),
                            heading_error=heading_error, report=report)

    def _tails(self, end_pos: np.ndarray, end_vel: np.ndarray) -> np.ndarray:
        """(P, n_tail, 3) points up to the stop from (end_pos, end_vel) with zero acceleration.

        The free-end minimum-jerk stop from speed u at peak deceleration a covers
        0.75 u^2 / a on the line of motion.
        """
        decel = self.config.a_max * (self._brake_fractions.max() if self._brake_fractions.size else 1.0)
        frac = np.arange(1, self.config.n_tail + 1) / max(self.config.n_tail, 1)
        stop = (0.75 / decel) * np.linalg.norm(end_vel, axis=1, keepdims=True) * end_vel  # u^2 along v/u
        return end_pos[:, None, :] + frac[None, :, None] * stop[:, None, :]

    def _brakes(self, state: VehicleState, pos: np.ndarray, vel: np.ndarray, acc: np.ndarray) -> np.ndarray:
        """Fill ``pos``/``vel``/``acc`` (B, S, 3) with the brake-to-rest primitives, one per
        brake fraction, holding at rest after stopping; return their stop times (B,) s."""
        cfg = self.config
        p0, v0, a0 = state.pos, state.vel, state.acc
        stop = np.zeros(self._brake_fractions.size)
        pos[:] = p0
        vel[:] = 0.0
        acc[:] = 0.0
        if np.linalg.norm(v0) <= 1e-6 and np.linalg.norm(a0) <= 1e-6:
            return stop
        for b, frac in enumerate(self._brake_fractions):
            lim = max(frac * cfg.a_max, float(np.linalg.norm(a0))) + 1e-9
            T = self._brake_T[kernels.brake_duration(v0, a0, self._brake_T, self._brake_tau, lim)]
            c3, c4 = kernels.brake_coefficients(v0, a0, T)
            stop[b] = T
            tc = np.minimum(self.t, T)[:, None]
            moving = (self.t < T)[:, None]
            pos[b] = p0 + v0 * tc + 0.5 * a0 * tc ** 2 + c3 * tc ** 3 + c4 * tc ** 4
            vel[b] = np.where(moving, v0 + a0 * tc + 3.0 * c3 * tc ** 2 + 4.0 * c4 * tc ** 3, 0.0)
            acc[b] = np.where(moving, a0 + 6.0 * c3 * tc + 12.0 * c4 * tc ** 2, 0.0)
        return stop
