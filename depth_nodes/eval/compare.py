"""Side-by-side comparison of two ``metrics.json`` files (run A vs run B).

Every numeric leaf is flattened to a dotted key (``depth.abs_rel``,
``bins.0.abs_rel`` for list items); booleans and strings are not compared.
Each row has A, B, ``diff = B - A`` and ``ratio = B / A`` (None where A is 0 or
a side is missing / null).
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from numbers import Real
from pathlib import Path


@dataclass(frozen=True)
class CompareRow:
    """One compared key. ``a``/``b`` are None where that side lacks it or holds null/NaN."""

    key: str
    a: float | None
    b: float | None
    diff: float | None
    ratio: float | None


def _number(x) -> float | None:
    if isinstance(x, bool) or not isinstance(x, Real):
        return None
    v = float(x)
    return v if math.isfinite(v) else None


def flatten_numeric(obj, prefix: str = "") -> dict[str, float | None]:
    """Dotted key -> value for numeric (and null) leaves of nested dicts/lists, in document order."""
    out: dict[str, float | None] = {}
    if isinstance(obj, Mapping):
        items = ((str(k), v) for k, v in obj.items())
    elif isinstance(obj, (list, tuple)):
        items = ((str(i), v) for i, v in enumerate(obj))
    else:
        raise ValueError(f"expected a dict or list at {prefix or 'top level'}, got {type(obj).__name__}")
    for k, v in items:
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, (Mapping, list, tuple)):
            out.update(flatten_numeric(v, key))
        elif v is None or (isinstance(v, float) and not math.isfinite(v)):
            out[key] = None
        elif _number(v) is not None:
            out[key] = _number(v)
    return out


def compare_metrics(a: Mapping, b: Mapping) -> list[CompareRow]:
    """Rows for the union of numeric keys of ``a`` and ``b`` (A's order, then B-only keys)."""
    fa, fb = flatten_numeric(a), flatten_numeric(b)
    rows = []
    for key in list(fa) + [k for k in fb if k not in fa]:
        va, vb = fa.get(key), fb.get(key)
        diff = vb - va if va is not None and vb is not None else None
        ratio = vb / va if diff is not None and va != 0 else None
        rows.append(CompareRow(key, va, vb, diff, ratio))
    return rows


def load_metrics(path) -> dict:
    """Read a metrics JSON object from a file, or ``metrics.json`` inside a directory."""
    p = Path(path)
    if p.is_dir():
        p = p / "metrics.json"
    if not p.exists():
        raise FileNotFoundError(f"metrics file {str(p)!r} does not exist")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{str(p)!r} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{str(p)!r} must hold a JSON object, got {type(data).__name__}")
    return data


def rows_as_dicts(rows: list[CompareRow]) -> list[dict]:
    return [asdict(r) for r in rows]


def _cell(v: float | None) -> str:
    return "-" if v is None else f"{v:.6g}"


def format_table(rows: list[CompareRow], name_a: str = "A", name_b: str = "B") -> str:
    """Plain-text aligned table: key | A | B | diff (B-A) | ratio (B/A)."""
    header = ["key", name_a, name_b, "diff (B-A)", "ratio (B/A)"]
    body = [[r.key, _cell(r.a), _cell(r.b), _cell(r.diff), _cell(r.ratio)] for r in rows]
    widths = [max(len(row[i]) for row in [header] + body) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in [header] + body]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
