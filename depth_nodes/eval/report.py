"""Self-contained HTML evaluation reports.

:func:`write_report` writes one ``report.html`` with every figure embedded as
a base64 PNG data URI: no external files, no scripts, no network. All text is
HTML-escaped. Figures are built on matplotlib's Agg canvas without pyplot, so
report generation has no global state and no display.

Plot helpers return :class:`matplotlib.figure.Figure` objects:

* :func:`plot_error_vs_distance`: a metric per depth bin (metres), several methods side by side;
* :func:`plot_per_frame`: a metric per frame index;
* :func:`plot_latency_histogram`: latency distributions (milliseconds) with medians;
* :func:`plot_topdown_map`: map points coloured by height, path, start and goal (world ``map``, metres);
* :func:`plot_sample_frames`: a grid ``RGB | prediction | GT | |error|`` with fixed colour scales.
"""
from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

#: Colormaps used for every report so figures are comparable across runs.
DEPTH_CMAP = "turbo"
ERROR_CMAP = "magma"
HEIGHT_CMAP = "viridis"
#: NaN ("no return") pixels are drawn in this colour.
INVALID_COLOUR = "#808080"
#: Point clouds in top-down maps are subsampled to at most this many points.
MAX_MAP_POINTS = 60_000


@dataclass
class Section:
    """One report section: optional paragraph, key/value table, extra tables and figures."""

    title: str
    text: str = ""
    values: Mapping[str, object] = field(default_factory=dict)
    tables: list[tuple[str, list[Mapping[str, object]]]] = field(default_factory=list)
    figures: list[tuple[str, Figure]] = field(default_factory=list)


# -- HTML -------------------------------------------------------------------------------------

def _fmt(value) -> str:
    """Readable cell text: 4 significant digits for floats, 'n/a' for None/NaN."""
    if value is None:
        return "n/a"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not math.isfinite(v):
            return "n/a" if math.isnan(v) else ("inf" if v > 0 else "-inf")
        return f"{v:.4g}"
    return str(value)


def _esc(value) -> str:
    return html.escape(_fmt(value), quote=True)


def figure_to_data_uri(fig: Figure, dpi: int = 100) -> str:
    """PNG data URI of ``fig`` (``data:image/png;base64,...``)."""
    if not isinstance(fig, Figure):
        raise ValueError(f"expected a matplotlib Figure, got {type(fig).__name__}")
    if fig.canvas is None or not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _verdict_class(row: Mapping[str, object]) -> str:
    for key in ("pass", "passed", "ok", "verdict"):
        if key in row:
            v = row[key]
            if isinstance(v, (bool, np.bool_)):
                return "pass" if v else "fail"
            if isinstance(v, str) and v.lower() in ("pass", "ok", "fail"):
                return "fail" if v.lower() == "fail" else "pass"
    return ""


def _table_html(rows: Sequence[Mapping[str, object]], css: str = "") -> str:
    if not rows:
        return "<p class='empty'>(no rows)</p>"
    columns: list[str] = []
    for row in rows:
        if not isinstance(row, Mapping):
            raise ValueError(f"table rows must be dicts, got {type(row).__name__}")
        columns += [str(k) for k in row if str(k) not in columns]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        by_name = {str(k): v for k, v in row.items()}
        cls = _verdict_class(row)
        cells = "".join(f"<td>{_esc(by_name.get(c, ''))}</td>" for c in columns)
        body.append(f"<tr class='{cls}'>{cells}</tr>" if cls else f"<tr>{cells}</tr>")
    return f"<table class='{css}'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _kv_html(values: Mapping[str, object]) -> str:
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{_esc(v)}</td></tr>" for k, v in values.items())
    return f"<table class='kv'>{rows}</table>"


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3}tr.pass td{background:#e5f6e5}tr.fail td{background:#fbe3e3}
table.kv th{width:22em}figure{margin:1em 0}figcaption{color:#555;font-size:.9em}
img{max-width:100%}.meta{color:#666;font-size:.9em}
"""


def render_report(title: str, verdict: Sequence[Mapping[str, object]] = (),
                  sections: Sequence[Section] = (), meta: Mapping[str, object] | None = None) -> str:
    """The full HTML document as a string (see :func:`write_report`)."""
    if not isinstance(title, str):
        raise ValueError(f"title must be a str, got {type(title).__name__}")
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1><p class='meta'>generated {stamp}</p>"]
    if meta:
        parts.append(_kv_html(meta))
    if verdict:
        parts.append("<h2>Verdict</h2>" + _table_html(list(verdict), "verdict"))
    for sec in sections:
        if not isinstance(sec, Section):
            raise ValueError(f"sections must be Section objects, got {type(sec).__name__}")
        parts.append(f"<section><h2>{html.escape(sec.title)}</h2>")
        if sec.text:
            parts.append(f"<p>{html.escape(sec.text)}</p>")
        if sec.values:
            parts.append(_kv_html(sec.values))
        for caption, rows in sec.tables:
            parts.append(f"<h3>{html.escape(caption)}</h3>" + _table_html(list(rows)))
        for caption, fig in sec.figures:
            parts.append(f"<figure><img alt='{html.escape(caption, quote=True)}' src='{figure_to_data_uri(fig)}'>"
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        parts.append("</section>")
    parts.append("</body></html>\n")
    return "".join(parts)


def write_report(path, title: str, verdict: Sequence[Mapping[str, object]] = (),
                 sections: Sequence[Section] = (), meta: Mapping[str, object] | None = None) -> Path:
    """Write a self-contained HTML report to ``path`` (``*.html``) or ``path/report.html``; return its path.

    ``verdict`` rows are dicts (columns = union of keys); a row with a boolean
    ``pass`` / ``ok`` (or ``verdict: "pass"|"fail"``) is coloured green/red.
    """
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        path = path / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(title, verdict, sections, meta), encoding="utf-8")
    return path


# -- plots ------------------------------------------------------------------------------------

def _figure(width: float = 7.0, height: float = 3.6) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _series(values: Mapping[str, object], name: str) -> dict[str, np.ndarray]:
    if not isinstance(values, Mapping) or not values:
        raise ValueError(f"{name} must be a non-empty dict label -> values")
    out = {}
    for label, v in values.items():
        a = np.asarray(v, dtype=np.float64).reshape(-1)
        out[str(label)] = a
    return out


def plot_error_vs_distance(bin_edges_m, errors: Mapping[str, object], metric: str = "abs_rel") -> Figure:
    """Grouped bars of ``metric`` per depth bin; ``errors[label]`` has ``len(bin_edges_m) - 1`` values."""
    edges = np.asarray(bin_edges_m, dtype=np.float64).reshape(-1)
    if edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError(f"bin_edges_m must be >= 2 increasing values, got {edges}")
    series = _series(errors, "errors")
    for label, a in series.items():
        if a.size != edges.size - 1:
            raise ValueError(f"errors[{label!r}] has {a.size} values for {edges.size - 1} bins")
    fig = _figure()
    ax = fig.add_subplot()
    x = np.arange(edges.size - 1)
    width = 0.8 / len(series)
    for k, (label, a) in enumerate(series.items()):
        ax.bar(x + (k - (len(series) - 1) / 2) * width, a, width, label=label)  # NaN bins: no bar
    ax.set_xticks(x, [f"{lo:g}-{hi:g}" for lo, hi in zip(edges[:-1], edges[1:])])
    ax.set_xlabel("ground-truth depth bin [m]")
    ax.set_ylabel(metric)
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    return fig


def plot_per_frame(values: Mapping[str, object], metric: str = "abs_rel") -> Figure:
    """``metric`` against frame index, one line per label (NaN frames leave gaps)."""
    series = _series(values, "values")
    fig = _figure(8.0, 3.0)
    ax = fig.add_subplot()
    for label, a in series.items():
        ax.plot(np.arange(a.size), a, label=label, linewidth=1.0)
    ax.set_xlabel("frame")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def clip_latencies(latencies_ms: Mapping[str, np.ndarray], percentile: float = 99.0) -> tuple[dict, float]:
    """(series with values above the pooled ``percentile`` set to it, that cap in ms): a few
    slow outliers (a first frame, a compile) otherwise squeeze a histogram into one bar."""
    cap = float(np.percentile(np.concatenate([np.asarray(a, float) for a in latencies_ms.values()]), percentile))
    return {k: np.minimum(np.asarray(a, float), cap) for k, a in latencies_ms.items()}, cap


def plot_latency_histogram(latencies_ms: Mapping[str, object], bins: int = 40) -> Figure:
    """Histograms of latencies in milliseconds with a dashed line at each median."""
    series = {k: v[np.isfinite(v)] for k, v in _series(latencies_ms, "latencies_ms").items()}
    fig = _figure()
    ax = fig.add_subplot()
    finite = [a for a in series.values() if a.size]
    if finite:
        lo, hi = min(a.min() for a in finite), max(a.max() for a in finite)
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
        for k, (label, a) in enumerate(series.items()):
            if a.size:
                colour = f"C{k}"
                median = float(np.median(a))
                ax.hist(a, bins=edges, alpha=0.5, color=colour, label=f"{label} (median {median:.3g} ms)")
                ax.axvline(median, color=colour, linestyle="--")
        ax.legend()
    ax.set_xlabel("latency [ms]")
    ax.set_ylabel("count")
    return fig


def plot_topdown_map(points_xyz=None, path_xyz=None, start=None, goal=None, title: str = "") -> Figure:
    """Top-down (x right, y up) view of the ``map`` frame in metres.

    ``points_xyz`` (N, 3) are drawn coloured by height z (subsampled to
    :data:`MAX_MAP_POINTS`), ``path_xyz`` (M, >=2) as a polyline with dots,
    ``start`` / ``goal`` as markers.
    """
    fig = _figure(6.5, 6.0)
    ax = fig.add_subplot()
    if points_xyz is not None:
        P = np.asarray(points_xyz, dtype=np.float64)
        if P.ndim != 2 or P.shape[1] < 3:
            raise ValueError(f"points_xyz must be (N, 3), got {P.shape}")
        P = P[np.all(np.isfinite(P[:, :3]), axis=1)]
        if P.shape[0] > MAX_MAP_POINTS:
            P = P[np.random.default_rng(0).choice(P.shape[0], MAX_MAP_POINTS, replace=False)]
        if P.size:
            size = float(np.clip(20_000 / P.shape[0], 0.3, 8.0))  # sparse clouds get bigger dots
            sc = ax.scatter(P[:, 0], P[:, 1], c=P[:, 2], s=size, cmap=HEIGHT_CMAP, linewidths=0)
            fig.colorbar(sc, ax=ax, label="height z [m]", shrink=0.8)
    if path_xyz is not None:
        Q = np.asarray(path_xyz, dtype=np.float64)
        if Q.ndim != 2 or Q.shape[1] < 2:
            raise ValueError(f"path_xyz must be (M, 2) or (M, 3), got {Q.shape}")
        ax.plot(Q[:, 0], Q[:, 1], "-", color="tab:red", linewidth=1.5, label="path")
        ax.plot(Q[:, 0], Q[:, 1], ".", color="tab:red", markersize=3)
    for name, p, marker, colour in (("start", start, "o", "tab:green"), ("goal", goal, "*", "tab:orange")):
        if p is not None:
            q = np.asarray(p, dtype=np.float64).reshape(-1)
            if q.size < 2:
                raise ValueError(f"{name} must have at least x, y; got {q}")
            ax.plot(q[0], q[1], marker, color=colour, markersize=12, markeredgecolor="k", label=name)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("x [m]")
    ax.set_ylabel("y [m]")
    if title:
        ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best")
    ax.grid(alpha=0.3)
    return fig


def plot_sample_frames(samples: Sequence[Mapping[str, object]], max_depth_m: float = 20.0,
                       max_error_m: float | None = None) -> Figure:
    """Grid with one row per sample: ``RGB | prediction | GT | |prediction - GT|``.

    Each sample has ``rgb`` (H, W, 3) uint8, ``pred`` and ``gt`` (H, W) metres
    (NaN = invalid) and optional ``title``. Depth uses :data:`DEPTH_CMAP` over
    ``[0, max_depth_m]`` and errors :data:`ERROR_CMAP` over ``[0, max_error_m]``
    (default ``max_depth_m / 4``) for every row, so rows and runs compare.
    """
    if not samples:
        raise ValueError("samples must be a non-empty list of dicts with rgb, pred, gt")
    if not (isinstance(max_depth_m, (int, float)) and math.isfinite(max_depth_m) and max_depth_m > 0):
        raise ValueError(f"max_depth_m must be a positive number, got {max_depth_m!r}")
    max_err = max_depth_m / 4 if max_error_m is None else float(max_error_m)
    fig = _figure(12.0, 2.6 * len(samples))
    axes = fig.subplots(len(samples), 4, squeeze=False)
    cmaps = {name: colormaps[name].with_extremes(bad=INVALID_COLOUR) for name in (DEPTH_CMAP, ERROR_CMAP)}
    images = {}
    for r, s in enumerate(samples):
        try:
            rgb, pred, gt = (np.asarray(s[k]) for k in ("rgb", "pred", "gt"))
        except KeyError as exc:
            raise ValueError(f"samples[{r}] lacks key {exc}") from None
        if pred.shape != gt.shape or pred.ndim != 2:
            raise ValueError(f"samples[{r}]: pred {pred.shape} and gt {gt.shape} must be the same (H, W)")
        err = np.abs(pred.astype(np.float64) - gt.astype(np.float64))
        panels = ((rgb, None, None, "RGB"), (pred, DEPTH_CMAP, max_depth_m, "prediction [m]"),
                  (gt, DEPTH_CMAP, max_depth_m, "ground truth [m]"), (err, ERROR_CMAP, max_err, "|error| [m]"))
        for c, (img, cmap, vmax, label) in enumerate(panels):
            ax = axes[r, c]
            if cmap is None:
                ax.imshow(img)
            else:
                images[c] = ax.imshow(np.ma.masked_invalid(img), cmap=cmaps[cmap], vmin=0.0, vmax=vmax)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(label)
        if s.get("title"):
            axes[r, 0].set_ylabel(str(s["title"]))
    for c, im in images.items():  # one colour bar per column: the scale is shared by all rows
        fig.colorbar(im, ax=axes[:, c], shrink=0.8)
    return fig
