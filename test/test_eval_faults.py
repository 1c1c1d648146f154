"""Fault-injection harness on the real graph (processes over DDS): a subset of the fault table.

One graph run (lockstep simulator, ground-truth depth, relay, mono depth node for the image fault)
with NaN depth, a size mismatch, a 1 s camera dropout and a 1 s odometry dropout; every row must pass.
The whole table is `depth-nodes eval faults`.
"""
from __future__ import annotations

import pytest

pytest.importorskip("rclpy")

from depth_nodes.eval.faults import select_faults  # noqa: E402
from depth_nodes.ros.fault_commands import markdown_table  # noqa: E402
from depth_nodes.ros.fault_run import run_faults  # noqa: E402

pytestmark = [pytest.mark.dds, pytest.mark.slow]

SUBSET = "depth_nan,size_mismatch,camera_dropout_1s,odom_dropout"


def test_fault_subset_all_rows_pass():
    result = run_faults(select_faults(SUBSET), timeout_s=240.0, progress=False, gap_s=1.5)
    table = markdown_table(result)
    names = [r["fault"] for r in result["rows"]]
    assert names == ["camera_dropout_1s", "odom_dropout", "depth_nan", "size_mismatch", "rejection_log_rate"]
    assert not result["deaths"], result["deaths"]
    assert all(r["pass"] for r in result["rows"]), table
    assert result["all_pass"]
