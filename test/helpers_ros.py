"""Shared helpers for in-process rclpy tests (append new helpers; do not change existing ones)."""
from __future__ import annotations

import time
from collections.abc import Callable


def spin_until(executor, predicate: Callable[[], bool], timeout_s: float = 10.0, step_s: float = 0.02,
               tick: Callable[[], None] | None = None, tick_period_s: float = 0.1) -> bool:
    """Spin ``executor`` until ``predicate()`` is true or ``timeout_s`` passes; returns the predicate.

    ``tick`` (e.g. re-publishing best-effort inputs) runs first and then every ``tick_period_s``.
    """
    deadline = time.monotonic() + timeout_s
    next_tick = time.monotonic()
    while not predicate():
        now = time.monotonic()
        if now >= deadline:
            return bool(predicate())
        if tick is not None and now >= next_tick:
            tick()
            next_tick = now + tick_period_s
        executor.spin_once(timeout_sec=step_s)
    return True
