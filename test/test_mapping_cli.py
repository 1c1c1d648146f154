"""`depth-nodes bench tsdf` / `eval map` print one JSON object with the documented keys."""
from __future__ import annotations

import json

import numpy as np

from depth_nodes.cli import main
from depth_nodes.mapping.metrics import reconstruction_metrics


def run_json(capsys, argv) -> dict:
    assert main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    return json.loads(out[0])


def test_bench_tsdf_json(capsys):
    r = run_json(capsys, ["bench", "tsdf", "--json", "--frames", "3", "--points", "2000"])
    for key in ("integrate_320x240_ms", "integrate_640x480_ms", "query_points_per_s", "esdf_window_ms",
                "integrate_320x240_cpu_ms", "query_cpu_ms", "esdf_window_cpu_ms"):
        assert r[key] > 0
    assert r["seed"] == 0 and r["device"] == "CPU:0" and r["map"]["blocks"] > 0
    assert 0.0 < r["query_known_fraction"] < 1.0
    assert r["surface_error_m_median"] < 0.05


def test_eval_map_json(capsys):
    r = run_json(capsys, ["eval", "map", "--world", "forest", "--seed", "3", "--frames", "4", "--json"])
    assert r["frames_integrated"] == 4 and r["world"] == "forest"
    assert r["accuracy_m_median"] < 0.05 and r["completeness"] > 0.8


def test_bad_arguments_exit_2(capsys):
    assert main(["bench", "tsdf", "--json", "--frames", "1"]) == 2
    assert main(["bench", "tsdf", "--json", "--carve-every", "0"]) == 2
    assert capsys.readouterr().out == ""


def test_reconstruction_metrics_on_a_plane(rng):
    recon = np.c_[rng.uniform(0, 1, (500, 2)), np.full(500, 0.02)]
    gt = np.c_[rng.uniform(0, 2, (400, 2)), np.zeros(400)]
    m = reconstruction_metrics(recon, lambda p: np.abs(p[:, 2]), gt, 0.15)
    assert abs(m["accuracy_m_median"] - 0.02) < 1e-9
    assert 0.15 < m["completeness"] < 0.45  # only the [0, 1]^2 quarter is reconstructed
    assert reconstruction_metrics(np.zeros((0, 3)), np.abs, gt)["completeness"] == 0.0
