"""`depth-nodes bench planner --json` prints one JSON object with the timing figures."""
from __future__ import annotations

import json

import pytest

from depth_nodes.cli import main


def test_bench_planner_prints_one_json_object(capsys):
    rc = main(["bench", "planner", "--json", "--frames", "1", "--repeat", "1", "--width", "64",
               "--height", "48", "--voxel", "0.25", "--n-yaw", "5", "--n-climb", "3"])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0 and len(out) == 1
    res = json.loads(out[0])
    for key in ("check_ms", "check_map_ms", "check_depth_ms", "depth_prepare_ms", "generate_ms",
                "plan_ms_median", "run_info"):
        assert key in res
    assert res["check_ms"] > 0 and res["plan_ms_median"] > 0
    assert res["n_primitives"] == 5 * 3 * 4 + 2 and res["n_samples"] == 21
    assert res["run_info"]["seed"] == 0


@pytest.mark.parametrize("args", [["--frames", "0"], ["--voxel", "5"], ["--n-yaw", "0"]])
def test_bench_planner_rejects_bad_arguments(args, capsys):
    assert main(["bench", "planner", "--json", *args]) == 2
    assert capsys.readouterr().out == ""
