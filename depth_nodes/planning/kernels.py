"""Compiled (numba) inner loops of the planner.

A planning cycle handles a few hundred primitives x a few dozen path points;
as chains of whole-array numpy passes, the per-pass overhead dominated it.
Each kernel here is one pass over that data:

    select_fan          the primitives within the velocity/acceleration limits, as (P, S, 3) arrays
    brake_coefficients  cubic/quartic terms of a brake-to-rest of given duration
    brake_duration      shortest brake duration within a deceleration limit
    follow_yaw          yaw turning toward the horizontal velocity at a rate limit
    path_extent         box around all path points, longest step of each primitive
    project_depth       gap to an eroded depth image at world points
    combine_checks      per-point obstacle verdicts -> per-primitive collision summary

All are ``njit(cache=True, nogil=True)``: compiled once per machine into the
on-disk cache, callable from several threads; :func:`warm_up` (called by the
planner's constructor) compiles or loads them before the first cycle. Units
and frames are the callers' (metres, seconds, radians; world frame ``map``
unless said otherwise).
"""
from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def select_fan(samples, v_lim2, a_lim2, n_extra):
    """The primitives of ``samples`` (n, 3, 3, S) ``[primitive, axis, derivative, sample]``
    (derivative 0, 1, 2: position, velocity, acceleration) within the limits.

    A primitive is over the velocity (acceleration) limit when its largest
    squared sample norm exceeds ``v_lim2`` (``a_lim2``). Returns ``(pos, vel,
    acc, v_bad, a_bad)``: (m + n_extra, S, 3) arrays whose first m rows are the
    kept primitives in order (the last ``n_extra`` rows are left to the
    caller), and (n,) bool flags.
    """
    n, S = samples.shape[0], samples.shape[3]
    v_bad = np.zeros(n, np.bool_)
    a_bad = np.zeros(n, np.bool_)
    m = 0
    for p in range(n):
        vm = 0.0
        am = 0.0
        for s in range(S):
            v2 = 0.0
            a2 = 0.0
            for d in range(3):
                v2 += samples[p, d, 1, s] * samples[p, d, 1, s]
                a2 += samples[p, d, 2, s] * samples[p, d, 2, s]
            vm = max(vm, v2)
            am = max(am, a2)
        v_bad[p] = vm > v_lim2
        a_bad[p] = am > a_lim2
        if not (v_bad[p] or a_bad[p]):
            m += 1
    out = np.empty((3, m + n_extra, S, 3))
    row = 0
    for p in range(n):
        if v_bad[p] or a_bad[p]:
            continue
        for k in range(3):
            for s in range(S):
                for d in range(3):
                    out[k, row, s, d] = samples[p, d, k, s]
        row += 1
    return out[0], out[1], out[2], v_bad, a_bad


@numba.njit(cache=True, nogil=True)
def brake_coefficients(v0, a0, T):
    """(c3, c4) (3,) of ``x(t) = p0 + v0 t + a0 t^2 / 2 + c3 t^3 + c4 t^4``, the free-end
    minimum-jerk stop from velocity ``v0`` and acceleration ``a0`` to rest (zero velocity
    and acceleration) at ``t = T`` seconds."""
    c3 = np.empty(3)
    c4 = np.empty(3)
    for d in range(3):
        dv = -v0[d] - a0[d] * T
        da = -a0[d]
        c3[d] = -da / (3.0 * T) + dv / (T * T)
        c4[d] = (0.5 * T * da - dv) / (2.0 * T * T * T)
    return c3, c4


@numba.njit(cache=True, nogil=True)
def brake_duration(v0, a0, durations, tau, limit):
    """Index of the first of ``durations`` (ascending, s) whose stop keeps the
    acceleration norm, sampled at the fractions ``tau`` of the duration, <= ``limit``;
    the index of the smallest peak when none does."""
    best, best_peak = 0, np.inf
    for i in range(durations.size):
        T = durations[i]
        c3, c4 = brake_coefficients(v0, a0, T)
        peak = 0.0
        for k in range(tau.size):
            tt = tau[k] * T
            n2 = 0.0
            for d in range(3):
                a = a0[d] + 6.0 * c3[d] * tt + 12.0 * c4[d] * tt * tt
                n2 += a * a
            peak = max(peak, math.sqrt(n2))
        if peak <= limit:
            return i
        if peak < best_peak:
            best, best_peak = i, peak
    return best


@numba.njit(cache=True, nogil=True)
def _wrap(a):
    """``a`` wrapped to [-pi, pi) (arithmetic: no trigonometric calls)."""
    return a - 2.0 * math.pi * math.floor((a + math.pi) / (2.0 * math.pi))


@numba.njit(cache=True, nogil=True)
def follow_yaw(vel, yaw0, step, hold_speed):
    """Yaw starting at ``yaw0`` that turns toward the horizontal direction of ``vel``
    (P, S, 3) by at most ``step`` rad per sample, holding while the horizontal speed
    is <= ``hold_speed``. Returns (yaw (P, S), heading_error (P, S)): the error is
    |direction of motion - yaw| in [0, pi] after the turn (0 while holding)."""
    P, S = vel.shape[0], vel.shape[1]
    hold2 = hold_speed * hold_speed
    yaw = np.empty((P, S))
    error = np.zeros((P, S))
    for p in range(P):
        cur = yaw0
        yaw[p, 0] = cur
        for s in range(S):
            vx, vy = vel[p, s, 0], vel[p, s, 1]
            if vx * vx + vy * vy > hold2:
                err = _wrap(math.atan2(vy, vx) - cur)
                turn = min(max(err, -step), step) if s > 0 else 0.0
                cur += turn
                error[p, s] = abs(err - turn)
            yaw[p, s] = cur
    return yaw, error


@numba.njit(cache=True, nogil=True)
def path_extent(path):
    """(lo (3,), hi (3,), max_step (P,)) of ``path`` (P, M, 3): the corners of the box
    around all points and each row's longest step between consecutive points."""
    P, M = path.shape[0], path.shape[1]
    lo = np.full(3, np.inf)
    hi = np.full(3, -np.inf)
    step = np.zeros(P)
    for p in range(P):
        for m in range(M):
            d2 = 0.0
            for d in range(3):
                lo[d] = min(lo[d], path[p, m, d])
                hi[d] = max(hi[d], path[p, m, d])
                if m > 0:
                    x = path[p, m, d] - path[p, m - 1, d]
                    d2 += x * x
            step[p] = max(step[p], math.sqrt(d2))
    return lo, hi, step


@numba.njit(cache=True, nogil=True)
def project_depth(points, R, t, K, pool, edges, eroded, invalid, no_return_free):
    """Gap (N,) metres and knowledge (N,) of world ``points`` (N, 3) against an eroded depth image.

    ``R``, ``t`` map world points into the optical frame; ``K`` (fx, fy, cx, cy,
    width, height) the camera; pixel (u, v) reads ``[v // pool, u // pool]`` of
    ``invalid`` (h, w) and of ``eroded`` (L, h, w) at the level of the last
    ``edges`` (L,) value <= the point's depth z. ``gap`` = observed - z (NaN
    outside the image or where nothing was observed); ``known`` inside the image
    where the pixel has a return or z <= ``no_return_free``.
    """
    N = points.shape[0]
    gap = np.full(N, np.nan)
    known = np.zeros(N, np.bool_)
    fx, fy, cx, cy, width, height = K[0], K[1], K[2], K[3], K[4], K[5]
    L = edges.size
    for i in range(N):
        x, y, z = points[i, 0], points[i, 1], points[i, 2]
        xc = R[0, 0] * x + R[0, 1] * y + R[0, 2] * z + t[0]
        yc = R[1, 0] * x + R[1, 1] * y + R[1, 2] * z + t[1]
        zc = R[2, 0] * x + R[2, 1] * y + R[2, 2] * z + t[2]
        if not zc > 1e-6:
            continue
        u = fx * xc / zc + cx
        v = fy * yc / zc + cy
        if not (u >= -0.5 and u < width - 0.5 and v >= -0.5 and v < height - 0.5):
            continue
        ui = int(np.rint(u)) // pool
        vi = int(np.rint(v)) // pool
        lvl = 0
        while lvl + 1 < L and edges[lvl + 1] <= zc:
            lvl += 1
        observed = eroded[lvl, vi, ui]
        known[i] = (not invalid[vi, ui]) or zc <= no_return_free
        if np.isfinite(observed):
            gap[i] = np.float64(observed) - zc
    return gap, known


@numba.njit(cache=True, nogil=True)
def combine_checks(path, need, dist, known, min_alt, max_alt, forbid, free_dist):
    """Collision verdicts of the points ``path`` (P, M, 3) given each source's
    distance/gap ``dist`` (n_src, P * M) (NaN: no information) and ``known``
    (n_src, P * M) flags (row-major over (P, M)).

    A point is blocked when a source's distance is below ``need[p]`` (or, where
    that source puts the start itself closer than ``need[p]``, below the start's
    distance: a vehicle inside its margin may leave it but not go deeper), when it is
    below ``min_alt`` and below the start or above ``max_alt`` and above the start
    (world z; pass -inf / inf to disable), or, with ``forbid``, when no source
    knows it and it lies farther than ``free_dist`` from the start. Point 0 never
    blocks. Returns (blocked (P, M), unknown (P, M), min_clearance (P,) over points
    1.. (point 0 when M == 1; +inf when nothing observed), unknown_fraction (P,)
    over points 1.., first_collision (P,) index or -1).
    """
    P, M = path.shape[0], path.shape[1]
    n_src = dist.shape[0]
    blocked = np.zeros((P, M), np.bool_)
    unknown = np.zeros((P, M), np.bool_)
    min_clear = np.full(P, np.inf)
    unknown_frac = np.zeros(P)
    first = np.full(P, -1, np.int64)
    need_src = np.empty(n_src)
    for p in range(P):
        z0 = path[p, 0, 2]
        n_unknown = 0
        for src in range(n_src):
            d0 = dist[src, p * M]
            need_src[src] = d0 if d0 < need[p] else need[p]
        for m in range(M):
            i = p * M + m
            b = False
            k = False
            c = np.inf
            for src in range(n_src):
                d = dist[src, i]
                if d < need_src[src]:
                    b = True
                if known[src, i]:
                    k = True
                if d < c:  # NaN never compares: no information
                    c = d
            z = path[p, m, 2]
            if (z < min_alt and z < z0 - 1e-6) or (z > max_alt and z > z0 + 1e-6):
                b = True
            if forbid and not k and not b:
                d2 = 0.0
                for a in range(3):
                    x = path[p, m, a] - path[p, 0, a]
                    d2 += x * x
                b = math.sqrt(d2) > free_dist
            if m == 0:
                b = False
            blocked[p, m] = b
            unknown[p, m] = not k
            if m >= 1 or M == 1:
                min_clear[p] = min(min_clear[p], c)
            if m >= 1 and not k:
                n_unknown += 1
            if b and first[p] < 0:
                first[p] = m
        if M > 1:
            unknown_frac[p] = n_unknown / (M - 1)
    return blocked, unknown, min_clear, unknown_frac, first


def warm_up() -> None:
    """Compile (or load from the on-disk cache) every kernel for the argument types the
    planner passes, so that the first planning cycle does not pay for compilation."""
    path = np.zeros((2, 3, 3))
    samples = np.zeros((2, 3, 3, 3))
    select_fan(samples, 1.0, 1.0, 1)
    brake_duration(np.ones(3), np.zeros(3), np.ones(2), np.linspace(0.0, 1.0, 3), 1.0)
    brake_coefficients(np.ones(3), np.zeros(3), 1.0)
    follow_yaw(path, 0.0, 0.1, 0.05)
    path_extent(path)
    project_depth(np.zeros((2, 3)), np.eye(3), np.zeros(3), np.ones(6), 1, np.zeros(2),
                  np.zeros((2, 1, 1), np.float32), np.zeros((1, 1), np.bool_), 0.0)
    combine_checks(path, np.ones(2), np.zeros((1, 6)), np.zeros((1, 6), np.bool_), -np.inf, np.inf, True, 0.5)
