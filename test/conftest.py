"""Shared test set-up: seeded randomness and an isolated ROS 2 domain per session."""
from __future__ import annotations

import os
import random

import numpy as np
import pytest

# Each pytest worker talks DDS on its own domain and only on this machine, so
# parallel workers and other sessions never see each other's topics.
_worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
_base = 40 + (os.getpid() % 50) * 2
os.environ.setdefault("ROS_DOMAIN_ID", str(_base + (int(_worker[2:]) if _worker[2:].isdigit() else 0)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    np.random.seed(0)
    yield


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
