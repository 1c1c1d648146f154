"""Helpers shared by CLI subcommands: JSON output, run metadata, timing."""
from __future__ import annotations

import json
import math
import os
import platform
import sys
import time

import numpy as np


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, np.generic):
        return _jsonable(x.item())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def emit_json(obj: dict) -> None:
    """Print exactly one JSON object on stdout (NaN/inf become null)."""
    sys.stdout.write(json.dumps(_jsonable(obj), sort_keys=False) + "\n")
    sys.stdout.flush()


def emit_result(obj: dict, as_json: bool) -> None:
    """One JSON object (``--json``) or readable ``key: value`` lines on stdout."""
    if as_json:
        emit_json(obj)
        return
    for key, value in obj.items():
        sys.stdout.write(f"{key}: {value}\n")


def run_info(**extra) -> dict:
    """The inputs that produced a figure: host, threads, device, versions."""
    info = {
        "host_cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    torch = sys.modules.get("torch")  # report torch only when the command used it
    if torch is not None:
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    info.update(extra)
    return info


def minor_page_faults() -> int:
    """Minor page faults of this process so far (0 where ``resource`` is missing)."""
    try:
        import resource
    except ImportError:  # not POSIX
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def timing_summary(times_ms, page_faults: float = 0.0) -> dict:
    """median/p90/min milliseconds of a series of call times, its length, and ``page_faults``
    (minor page faults, in all) per call."""
    a = np.asarray(times_ms, dtype=float)
    return {"median_ms": float(np.median(a)), "p90_ms": float(np.percentile(a, 90)),
            "min_ms": float(a.min()), "n": int(a.size), "page_faults": page_faults / a.size}


def time_call(fn, *, repeat: int = 20, warmup: int = 3, min_seconds: float = 0.0) -> dict:
    """Run ``fn`` and return median/p90/min milliseconds over ``repeat`` calls, and the
    process's minor page faults per call (memory mapped afresh while they ran)."""
    for _ in range(warmup):
        fn()
    times = []
    faults = minor_page_faults()
    t_start = time.perf_counter()
    while len(times) < repeat or (time.perf_counter() - t_start) < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return timing_summary(times, minor_page_faults() - faults)


def add_json_flag(parser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="print exactly one JSON object on stdout (logs go to stderr)")
