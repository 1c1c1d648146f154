"""Node executables stop cleanly on SIGINT (Ctrl-C) and SIGTERM, even when started with SIGINT ignored."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from depth_nodes.eval.bagio import BagSource

pytestmark = pytest.mark.dds


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_bag_recorder_closes_its_bag_on_signal(tmp_path, sig):
    out = tmp_path / "bag"
    proc = subprocess.Popen(
        [sys.executable, "-m", "depth_nodes.ros.bag_recorder", "--ros-args",
         "-p", "topics:=odom", "-p", "types:=nav_msgs/msg/Odometry", "-p", f"output:={out}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        # as a background job of a non-interactive shell (CI, nohup, `make demo &`) starts it:
        # SIGINT ignored, so only handlers the node installs itself can stop it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        deadline = time.monotonic() + 60.0
        while not out.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert out.exists(), "recorder never opened its bag"
        time.sleep(1.0)   # well into spin()
        proc.send_signal(sig)
        rc = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    log = proc.stdout.read()
    assert rc == 0, log
    assert (out / "metadata.yaml").is_file(), "bag not finalised"   # written when the writer closes
    assert BagSource(out).info().storage == "mcap"
