"""builtin_interfaces/Time stamps <-> seconds, without ROS (duck-typed ``sec``/``nanosec``)."""
from __future__ import annotations

import math
from numbers import Integral

_NS = 1_000_000_000


def stamp_to_ns(stamp) -> int:
    """Integer nanoseconds of a Time (``sec``, ``nanosec``) or of a Header (uses ``.stamp``)."""
    stamp = getattr(stamp, "stamp", stamp)
    sec, nsec = getattr(stamp, "sec", None), getattr(stamp, "nanosec", None)
    if not isinstance(sec, Integral) or not isinstance(nsec, Integral) or isinstance(sec, bool):
        raise ValueError(f"stamp needs int sec and nanosec, got sec={sec!r} nanosec={nsec!r}")
    if not 0 <= nsec < _NS:
        raise ValueError(f"stamp nanosec={nsec} outside 0..{_NS - 1}")
    return int(sec) * _NS + int(nsec)


def stamp_to_sec(stamp) -> float:
    """Seconds (float) of a Time or Header stamp."""
    return stamp_to_ns(stamp) / _NS


def sec_to_stamp_fields(seconds: float) -> tuple[int, int]:
    """Seconds -> (sec, nanosec) with 0 <= nanosec < 1e9 (floor for negative times)."""
    if not math.isfinite(seconds):
        raise ValueError(f"seconds must be finite, got {seconds}")
    ns = round(seconds * _NS)
    return ns // _NS, ns % _NS
