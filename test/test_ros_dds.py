"""Two processes over real DDS: a publisher subprocess sends a 640x480 32FC1 Image and a 50k-point
PointCloud2; this process subscribes and checks both bit for bit against the same seeded data."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from helpers_dds_publisher import STAMP_SEC, make_payload, qos
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import Image, PointCloud2

from depth_nodes.ros.conversions import cloud_to_structured, cloud_to_xyz, image_to_array, stamp_to_sec

HELPER = Path(__file__).with_name("helpers_dds_publisher.py")
RECEIVE_TIMEOUT_S = 20.0
SEED = 7


def dds_env() -> dict:
    env = dict(os.environ)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["ROS_DOMAIN_ID"] = os.environ["ROS_DOMAIN_ID"]
    env["PYTHONPATH"] = os.pathsep.join([str(HELPER.parents[1]), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def bits(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).tobytes()


@pytest.mark.dds
@pytest.mark.timeout(30)
def test_image_and_cloud_cross_dds_bit_for_bit(monkeypatch):
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    prefix = f"dds_test_{os.getpid()}"
    proc = subprocess.Popen([sys.executable, str(HELPER), "--prefix", prefix, "--seed", str(SEED)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dds_env())
    received: dict = {}
    context = Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node("dds_test_subscriber", context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        node.create_subscription(Image, f"{prefix}/depth", lambda m: received.setdefault("image", m), qos())
        node.create_subscription(PointCloud2, f"{prefix}/points", lambda m: received.setdefault("cloud", m), qos())
        deadline = time.monotonic() + RECEIVE_TIMEOUT_S
        while len(received) < 2 and time.monotonic() < deadline and proc.poll() is None:
            executor.spin_once(timeout_sec=0.1)
        executor.shutdown()
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
        try:
            _, err = proc.communicate(input=b"", timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert proc.returncode == 0, f"publisher failed (rc={proc.returncode}):\n{err.decode(errors='replace')[-2000:]}"
    assert set(received) == {"image", "cloud"}, f"received only {sorted(received)} within {RECEIVE_TIMEOUT_S} s"

    depth, xyz, intensity = make_payload(SEED)
    img = received["image"]
    assert (img.encoding, img.header.frame_id, stamp_to_sec(img.header)) == ("32FC1", "camera_optical", STAMP_SEC)
    got = image_to_array(img)
    assert got.shape == (480, 640) and got.dtype == np.float32
    assert bits(got) == bits(depth)

    cloud = received["cloud"]
    assert (cloud.width, cloud.header.frame_id, cloud.is_dense) == (50_000, "map", False)
    assert bits(cloud_to_xyz(cloud, skip_nans=False)) == bits(xyz)
    assert bits(cloud_to_structured(cloud)["intensity"]) == bits(intensity)
