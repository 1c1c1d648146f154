"""Checks of the fault table, on what a harness recorded (plain lists and dicts, no ROS).

Times are simulated seconds (message stamps) unless a name says ``wall``.
Each check returns ``(passed, observed)`` with ``observed`` a short text for
the table.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

#: Planner statuses that command a stop because an input is stale.
BRAKE_STATUSES = ("stale_depth", "stale_odom")
#: Statuses that are not a normal planning cycle.
NOT_PLANNING = BRAKE_STATUSES + ("error",)
#: The planner must command the stop within this much simulated time of the input going stale (s).
BRAKE_DEADLINE_S = 0.2


def last_before(stamps: list[float], t: float) -> float | None:
    """Largest stamp < ``t`` (unsorted input), or None."""
    before = [s for s in stamps if s < t]
    return max(before) if before else None


def brake_and_resume(statuses: list[dict], stale_at_s: float, end_s: float, resume_by_s: float,
                     deadline_s: float = BRAKE_DEADLINE_S) -> tuple[bool, str]:
    """The planner reported a brake status within ``deadline_s`` of ``stale_at_s`` (when its newest
    good input exceeded its timeout), kept braking until ``end_s`` (the fault's end) and planned
    normally again before ``resume_by_s``. ``statuses`` are planner/status dicts (``stamp``, ``status``)."""
    by_time = sorted((s["stamp"], s["status"]) for s in statuses if s.get("stamp") is not None)
    brake = next(((t, st) for t, st in by_time if t >= stale_at_s - 1e-6 and st in BRAKE_STATUSES), None)
    if brake is None:
        return False, f"no brake status after the input went stale at {stale_at_s:.2f}"
    delay = brake[0] - stale_at_s
    leaks = [t for t, st in by_time if brake[0] < t < end_s and st not in NOT_PLANNING]
    resume = next((t for t, st in by_time if end_s <= t <= resume_by_s and st not in NOT_PLANNING), None)
    text = f"{brake[1]} {delay * 1e3:.0f} ms after stale"
    text += f", {len(leaks)} plans while stale" if leaks else ""
    text += f", resumed {resume - end_s:.2f} s after" if resume is not None else ", did not resume"
    return delay <= deadline_s + 1e-6 and not leaks and resume is not None, text


def map_unchanged(map_sizes: list[tuple[float, int]], start_s: float, end_s: float,
                  settle_s: float = 0.5) -> tuple[bool, str]:
    """The map's size (points in map/points) did not change between ``start_s + settle_s`` (frames
    stamped before the fault may still be fused) and ``end_s``. ``map_sizes``: (stamp, points)."""
    window = sorted((t, n) for t, n in map_sizes if start_s + settle_s <= t < end_s)
    if len(window) < 2:
        return False, f"only {len(window)} map messages during the fault"
    sizes = [n for _, n in window]
    return min(sizes) == max(sizes), f"map {sizes[0]} -> {sizes[-1]} points during the fault"


def brakes_first_after(statuses: list[dict], start_s: float, end_s: float,
                       resume_by_s: float) -> tuple[bool, str]:
    """The first planner status stamped at or after ``start_s`` (an outage that also stopped the
    planner's clock, e.g. a partition from the /clock source) is a brake, and normal planning resumes
    after ``end_s`` before ``resume_by_s``."""
    by_time = sorted((s["stamp"], s["status"]) for s in statuses
                     if s.get("stamp") is not None and s["stamp"] >= start_s)
    if not by_time:
        return False, "no planner status after the outage began"
    first_t, first = by_time[0]
    resume = next((t for t, st in by_time if end_s <= t <= resume_by_s and st not in NOT_PLANNING), None)
    text = f"first status after the outage: {first} at +{first_t - start_s:.2f} s"
    text += f", resumed {resume - end_s:.2f} s after" if resume is not None else ", did not resume"
    return first in BRAKE_STATUSES and resume is not None, text


def resumed_after(statuses: list[dict], after_s: float, by_s: float) -> float | None:
    """Stamp of the first normal planning cycle in [after_s, by_s], or None."""
    times = sorted(s["stamp"] for s in statuses if s.get("stamp") is not None and after_s <= s["stamp"] <= by_s
                   and s.get("status") not in NOT_PLANNING)
    return times[0] if times else None


def counter_delta(before: dict[str, dict[str, str]], after: dict[str, dict[str, str]], node: str,
                  key: str) -> int:
    """Increase of an integer diagnostics value of ``node`` between two snapshots (missing = 0)."""
    def value(snap):
        try:
            return int(float(snap.get(node, {}).get(key, "0")))
        except ValueError:
            return 0
    return value(after) - value(before)


def counters_not_risen(before: dict[str, dict[str, str]], after: dict[str, dict[str, str]],
                       expected: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The (node, topic) pairs of ``expected`` whose ``rejected/{topic}`` counter has not risen
    between the two diagnostics snapshots."""
    return [(node, topic) for node, topic in expected if counter_delta(before, after, node, f"rejected/{topic}") <= 0]


def max_log_rate_ok(times_by_key: dict[tuple[str, str], list[float]], period_s: float = 1.0,
                    min_gap_s: float = 0.25) -> tuple[bool, str]:
    """Rejection log lines came at most once per ``period_s`` per (node, topic) (wall times of the lines).

    A line is stamped when written, not when the throttle decided to write it; on a loaded machine the
    two differ by up to about half a second (GIL, scheduling), so two lines may look closer than
    ``period_s``. Checked: at most ``span / period_s + 2`` lines per key, never two within ``min_gap_s``."""
    worst_text, ok = "at most one rejection line per topic", True
    closest = float("inf")
    for key, times in times_by_key.items():
        t = np.sort(np.asarray(times, dtype=np.float64))
        if t.size < 2:
            continue
        gap = float(np.diff(t).min())
        allowed = int((t[-1] - t[0]) / period_s) + 2
        if t.size > allowed or gap < min_gap_s:
            ok = False
            worst_text = f"{t.size} lines in {t[-1] - t[0]:.1f} s, closest {gap:.2f} s apart ({key[0]} {key[1]})"
        elif ok and gap < closest:
            closest = gap
            worst_text = f"closest rejection lines {gap:.2f} s apart ({key[0]} {key[1]}), none above 1/s"
    return ok, worst_text


@dataclass(frozen=True)
class LatencySample:
    """One camera frame: its stamp (s), the wall time its trajectory was published (s), latency (ms)."""

    stamp_s: float
    wall_s: float
    latency_ms: float


def recovery_time_s(samples: list[LatencySample], burst_start_s: float, burst_end_s: float,
                    window_end_s: float, factor: float = 1.5, floor_ms: float = 50.0,
                    run: int = 5) -> tuple[float, float]:
    """(baseline median latency (ms) over the 3 s before the burst, wall seconds from the first frame
    past the burst to the first normal frame (<= max(factor * baseline, baseline + floor_ms)) that starts
    ``run`` consecutive frames of normal median latency), frames up to ``window_end_s``.

    Recovery is ``nan`` when there is no baseline or no frame after the burst, and ``inf`` when latency
    was not back to normal within the window."""
    samples = sorted(samples, key=lambda s: s.stamp_s)
    base = [s.latency_ms for s in samples if burst_start_s - 3.0 <= s.stamp_s < burst_start_s]
    after = [s for s in samples if burst_end_s <= s.stamp_s < window_end_s]
    if not base or not after:
        return (float(np.median(base)) if base else float("nan")), float("nan")
    baseline = float(np.median(base))
    limit = max(factor * baseline, baseline + floor_ms)
    n = min(run, len(after))
    for i in range(len(after) - n + 1):
        if after[i].latency_ms <= limit and float(np.median([s.latency_ms for s in after[i:i + n]])) <= limit:
            return baseline, after[i].wall_s - after[0].wall_s
    return baseline, float("inf")


def sim_to_wall(sim_wall: list[tuple[float, float]], t_s: float) -> float | None:
    """Wall time at which the simulation reached ``t_s`` from (sim stamp, wall) pairs, or None."""
    pairs = sorted(sim_wall)
    i = bisect.bisect_left([p[0] for p in pairs], t_s)
    return pairs[i][1] if i < len(pairs) else None
