"""Rates, latencies and rejection counters shared by nodes, replay and benchmarks.

Pure Python (no ROS): nodes publish these as diagnostics, the offline evaluator
writes them into metrics.json.
"""
from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field

import numpy as np


class RateMeter:
    """Events per second over a sliding window of ``window_s`` seconds."""

    def __init__(self, window_s: float = 5.0, clock=time.monotonic):
        if window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self.window_s = float(window_s)
        self._clock = clock
        self._stamps: collections.deque[float] = collections.deque()
        self.count = 0

    def tick(self, now: float | None = None) -> None:
        now = self._clock() if now is None else now
        self._stamps.append(now)
        self.count += 1
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self._stamps and now - self._stamps[0] > self.window_s:
            self._stamps.popleft()

    def rate_hz(self, now: float | None = None) -> float:
        now = self._clock() if now is None else now
        self._trim(now)
        n = len(self._stamps)
        if n < 2:
            return 0.0
        span = self._stamps[-1] - self._stamps[0]
        return (n - 1) / span if span > 0 else 0.0


class LatencyStats:
    """Bounded reservoir of the most recent latencies (milliseconds)."""

    def __init__(self, maxlen: int = 500):
        self._v: collections.deque[float] = collections.deque(maxlen=maxlen)
        self.count = 0

    def add(self, ms: float) -> None:
        if np.isfinite(ms):
            self._v.append(float(ms))
            self.count += 1

    def summary(self) -> dict[str, float]:
        if not self._v:
            return {"median_ms": float("nan"), "p90_ms": float("nan"), "max_ms": float("nan"), "n": 0}
        a = np.fromiter(self._v, dtype=np.float64)
        return {"median_ms": float(np.median(a)), "p90_ms": float(np.percentile(a, 90)),
                "max_ms": float(a.max()), "n": int(a.size)}


@dataclass
class RejectionLog:
    """Counts rejected inputs per (topic, reason) and decides when to log them.

    ``should_log`` returns True at most once per ``period_s`` for each topic, so a
    flood of bad messages produces one log line per second per topic.
    """

    period_s: float = 1.0
    clock: object = time.monotonic
    counts: collections.Counter = field(default_factory=collections.Counter)
    _last: dict = field(default_factory=dict)

    def reject(self, topic: str, reason: str) -> bool:
        self.counts[(topic, reason)] += 1
        now = self.clock()
        last = self._last.get(topic)
        if last is None or now - last >= self.period_s:
            self._last[topic] = now
            return True
        return False

    def total(self, topic: str | None = None) -> int:
        return sum(n for (t, _), n in self.counts.items() if topic is None or t == topic)

    def by_topic(self) -> dict[str, int]:
        out: dict[str, int] = collections.defaultdict(int)
        for (t, _), n in self.counts.items():
            out[t] += n
        return dict(out)


class StageTimer:
    """Context manager recording the wall time of a named stage into LatencyStats."""

    def __init__(self, stats: dict[str, LatencyStats], name: str):
        self._stats, self._name = stats, name

    def __enter__(self):
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.ms = (time.perf_counter() - self._t0) * 1e3
        self._stats.setdefault(self._name, LatencyStats()).add(self.ms)
        return False
