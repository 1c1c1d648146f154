"""Rate meters, latency reservoirs and throttled rejection counting."""
from __future__ import annotations

import numpy as np
import pytest

from depth_nodes.telemetry import LatencyStats, RateMeter, RejectionLog, StageTimer


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_rate_meter_counts_window():
    clock = FakeClock()
    rm = RateMeter(window_s=2.0, clock=clock)
    for i in range(21):
        clock.t = i * 0.1
        rm.tick()
    assert rm.rate_hz() == pytest.approx(10.0)
    clock.t = 10.0
    assert rm.rate_hz() == 0.0
    with pytest.raises(ValueError):
        RateMeter(0)


def test_latency_stats_bounded_and_ignores_nan():
    s = LatencyStats(maxlen=10)
    for v in range(100):
        s.add(float(v))
    s.add(float("nan"))
    out = s.summary()
    assert out["n"] == 10 and out["max_ms"] == 99.0 and out["median_ms"] == pytest.approx(94.5)
    assert np.isnan(LatencyStats().summary()["median_ms"])


def test_rejection_log_throttles_per_topic():
    clock = FakeClock()
    log = RejectionLog(period_s=1.0, clock=clock)
    logged = [log.reject("camera/image", "bad encoding") for _ in range(50)]
    assert logged.count(True) == 1
    assert log.reject("odom", "nan pose") is True  # other topics are throttled separately
    clock.t = 1.5
    assert log.reject("camera/image", "size mismatch") is True
    assert log.total("camera/image") == 51 and log.total() == 52
    assert log.by_topic() == {"camera/image": 51, "odom": 1}


def test_stage_timer_records():
    stats = {}
    with StageTimer(stats, "infer") as t:
        sum(range(1000))
    assert stats["infer"].count == 1 and t.ms >= 0.0
