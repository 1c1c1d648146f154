"""report.html (embedded PNGs, escaping, verdict table), plot helpers, metrics comparison + CLI."""
from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest

from depth_nodes.cli import main
from depth_nodes.eval.compare import compare_metrics, flatten_numeric, format_table, load_metrics
from depth_nodes.eval.report import (
    Section,
    clip_latencies,
    figure_to_data_uri,
    plot_error_vs_distance,
    plot_latency_histogram,
    plot_per_frame,
    plot_sample_frames,
    plot_topdown_map,
    write_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _data_uris(text: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", text)]


def test_report_embeds_figures_escapes_text_and_colours_verdict(tmp_path, rng):
    depth = rng.uniform(1, 10, (24, 32)).astype(np.float32)
    pred = depth * 1.1
    pred[0, :5] = np.nan
    rgb = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
    figs = [
        ("bins <m>", plot_error_vs_distance([0, 2, 5, 10], {"ours": [0.05, 0.08, np.nan], "sgbm": [0.1, 0.2, 0.3]})),
        ("per frame", plot_per_frame({"ours": rng.random(50)})),
        ("latency", plot_latency_histogram({"ours": rng.normal(20, 2, 200), "baseline": [np.nan, 35.0, 36.0]})),
        ("map", plot_topdown_map(rng.uniform(-5, 5, (500, 3)), [[0, 0, 1], [1, 1, 1], [2, 3, 1]], [0, 0], [2, 3])),
        ("samples", plot_sample_frames([{"rgb": rgb, "pred": pred, "gt": depth, "title": "f0"},
                                        {"rgb": rgb, "pred": depth, "gt": depth}], max_depth_m=10.0)),
    ]
    verdict = [{"check": "abs_rel < 0.1", "value": 0.0712345, "pass": True},
               {"check": "<script>alert(1)</script>", "value": float("nan"), "pass": False}]
    sections = [Section("Depth & <accuracy>", text="a \"quoted\" <b>claim</b>",
                        values={"abs_rel": 0.0712345, "frames": 120, "note": "x<y"},
                        tables=[("per bin", [{"bin_m": "0-2", "abs_rel": 0.05}])], figures=figs)]
    out = write_report(tmp_path, "Run <A> & B", verdict, sections, meta={"bag": "/data/x&y.mcap"})
    assert out == tmp_path / "report.html"
    text = out.read_text()
    pngs = _data_uris(text)
    assert len(pngs) == len(figs) and all(p.startswith(PNG_MAGIC) for p in pngs)
    assert "<script" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "Run &lt;A&gt; &amp; B" in text and "Depth &amp; &lt;accuracy&gt;" in text
    assert "&lt;b&gt;claim&lt;/b&gt;" in text and "x&lt;y" in text and "/data/x&amp;y.mcap" in text
    assert "http" not in text  # no external resources
    assert write_report(tmp_path / "new" / "r.html", "t").read_text().startswith("<!DOCTYPE html>")
    assert write_report(tmp_path / "newdir", "t") == tmp_path / "newdir" / "report.html"
    verdict_html = text.split("<h2>Verdict</h2>")[1].split("</table>")[0]
    assert verdict_html.count("<tr class='pass'>") == 1 and verdict_html.count("<tr class='fail'>") == 1
    assert "0.07123" in verdict_html and "n/a" in verdict_html


def test_report_input_validation():
    with pytest.raises(ValueError, match="bin_edges_m"):
        plot_error_vs_distance([5, 2], {"a": [1.0]})
    with pytest.raises(ValueError, match=r"errors\['a'\] has 1 values for 2 bins"):
        plot_error_vs_distance([0, 1, 2], {"a": [1.0]})
    with pytest.raises(ValueError, match="pred"):
        plot_sample_frames([{"rgb": np.zeros((2, 2, 3), np.uint8), "pred": np.zeros((2, 3)), "gt": np.zeros((2, 2))}])
    with pytest.raises(ValueError, match="lacks key"):
        plot_sample_frames([{"rgb": np.zeros((2, 2, 3), np.uint8)}])
    with pytest.raises(ValueError, match="points_xyz"):
        plot_topdown_map(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="Figure"):
        figure_to_data_uri("not a figure")


A = {"depth": {"abs_rel": 0.10, "delta1": 0.80, "frames": 100}, "latency_ms_median": 20.0,
     "bins": [{"abs_rel": 0.05}, {"abs_rel": 0.2}], "name": "ours", "ok": True, "only_a": 3.0, "nan_val": None}
B = {"depth": {"abs_rel": 0.05, "delta1": 0.90, "frames": 100}, "latency_ms_median": 0.0,
     "bins": [{"abs_rel": 0.10}, {"abs_rel": 0.2}], "name": "base", "ok": False, "only_b": 1.0, "nan_val": 2.0}


def test_compare_keys_differences_ratios():
    flat = flatten_numeric(A)
    assert list(flat) == ["depth.abs_rel", "depth.delta1", "depth.frames", "latency_ms_median",
                          "bins.0.abs_rel", "bins.1.abs_rel", "only_a", "nan_val"]
    rows = {r.key: r for r in compare_metrics(A, B)}
    assert rows["depth.abs_rel"].diff == pytest.approx(-0.05) and rows["depth.abs_rel"].ratio == pytest.approx(0.5)
    assert rows["depth.delta1"].diff == pytest.approx(0.10) and rows["depth.delta1"].ratio == pytest.approx(1.125)
    assert rows["bins.0.abs_rel"].ratio == pytest.approx(2.0)
    assert rows["latency_ms_median"].diff == -20.0
    assert rows["depth.frames"].diff == 0.0 and rows["depth.frames"].ratio == 1.0
    assert rows["only_a"].b is None and rows["only_a"].diff is None
    assert rows["only_b"].a is None and rows["only_b"].b == 1.0
    assert rows["nan_val"].a is None and rows["nan_val"].diff is None
    assert "name" not in rows and "ok" not in rows  # strings/bools are not compared
    zero = {r.key: r for r in compare_metrics({"x": 0.0}, {"x": 1.0})}
    assert zero["x"].diff == 1.0 and zero["x"].ratio is None
    table = format_table(compare_metrics(A, B))
    assert "depth.abs_rel" in table and "-0.05" in table and "0.5" in table


def test_compare_cli_table_and_json(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "metrics.json").write_text(json.dumps(A))
    (tmp_path / "b.json").write_text(json.dumps(B))
    assert main(["eval", "compare", str(tmp_path / "a"), str(tmp_path / "b.json"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = {r["key"]: r for r in out["rows"]}
    assert rows["depth.delta1"]["ratio"] == pytest.approx(1.125)
    assert out["only_in_a"] == ["only_a"] and out["only_in_b"] == ["only_b"]
    assert out["n_keys"] == len(rows) and "run" in out
    assert main(["eval", "compare", str(tmp_path / "a"), str(tmp_path / "b.json")]) == 0
    text = capsys.readouterr().out
    assert "diff (B-A)" in text and "latency_ms_median" in text
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        load_metrics(tmp_path / "bad.json")
    assert main(["eval", "compare", str(tmp_path / "missing.json"), str(tmp_path / "b.json")]) == 2


def test_clip_latencies_caps_outliers_at_the_pooled_percentile():
    a = np.concatenate([np.full(198, 5.0), [1750.0, 900.0]])
    b = np.full(100, 10.0)
    clipped, cap = clip_latencies({"a": a, "b": b})
    assert cap == pytest.approx(np.percentile(np.concatenate([a, b]), 99))
    assert cap < 900.0 and clipped["a"].max() == pytest.approx(cap)
    np.testing.assert_array_equal(clipped["b"], b)
    assert np.count_nonzero(clipped["a"] == cap) == 2  # the two outliers, drawn at the cap
