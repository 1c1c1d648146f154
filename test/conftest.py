"""Shared test set-up: seeded randomness and an isolated ROS 2 domain per session."""
from __future__ import annotations

import os
import random

import numpy as np
import pytest

# Each pytest process talks DDS on a ROS domain of its own and only on this
# machine, so parallel xdist workers, concurrent test runs and a graph started by
# hand (domain 0) never see each other's topics (/clock is absolute, so namespaces
# alone would not do). A domain is claimed with an exclusive lock file held for
# the life of the process.
_DOMAIN_LOCK = None


def _claim_domain() -> int:
    global _DOMAIN_LOCK
    import fcntl
    import tempfile

    start = os.getpid() % 100
    for k in range(100):
        domain = 1 + (start + k) % 100          # 1..100: valid on Linux, never the default 0
        f = open(os.path.join(tempfile.gettempdir(), f"depth_nodes_ros_domain_{domain}.lock"), "w")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        _DOMAIN_LOCK = f
        return domain
    raise RuntimeError("no free ROS domain id in 1..100 for this test process")


# Every process that loads this file (the xdist controller and each worker) claims
# its own domain; processes that tests start inherit their worker's environment.
os.environ["ROS_DOMAIN_ID"] = str(_claim_domain())
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    np.random.seed(0)
    yield


@pytest.fixture
def ctx():
    """A fresh rclpy context for one test (initialised, shut down afterwards)."""
    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    rclpy.shutdown(context=context)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
