"""Publisher process for test_ros_dds: one seeded 32FC1 Image and one PointCloud2 over DDS.

Run as ``python test/helpers_dds_publisher.py --prefix NAME --seed N``. Publishes
once with reliable, transient-local QoS (late subscribers still get the
samples), prints ``PUBLISHED`` and keeps serving until its stdin closes or
``--lifetime`` seconds pass. ``make_payload`` is imported by the test to
rebuild the same data.
"""
from __future__ import annotations

import argparse
import sys
import threading
import time

import numpy as np

IMAGE_SHAPE = (480, 640)
CLOUD_POINTS = 50_000
STAMP_SEC = 1234.5


def make_payload(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(depth (480, 640) float32 m with NaN holes, xyz (50k, 3) float32 with NaNs, intensity (50k,) float32)."""
    rng = np.random.default_rng(seed)
    depth = rng.uniform(0.2, 40.0, IMAGE_SHAPE).astype(np.float32)
    depth[rng.random(IMAGE_SHAPE) < 0.05] = np.nan
    xyz = rng.normal(0.0, 15.0, (CLOUD_POINTS, 3)).astype(np.float32)
    xyz[rng.random(CLOUD_POINTS) < 0.01, 1] = np.nan
    intensity = rng.uniform(0.0, 255.0, CLOUD_POINTS).astype(np.float32)
    return depth, xyz, intensity


def qos():
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)


def main(argv=None) -> int:
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image, PointCloud2

    from depth_nodes.ros.conversions import array_to_image_msg, xyz_to_cloud_msg

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", required=True, help="topic namespace")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lifetime", type=float, default=25.0, help="seconds before exiting regardless")
    args = parser.parse_args(argv)

    stdin_closed = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stdin_closed.set()), daemon=True).start()

    depth, xyz, intensity = make_payload(args.seed)
    context = Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node("dds_test_publisher", context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        pub_img = node.create_publisher(Image, f"{args.prefix}/depth", qos())
        pub_pts = node.create_publisher(PointCloud2, f"{args.prefix}/points", qos())
        pub_img.publish(array_to_image_msg(depth, "32FC1", stamp=STAMP_SEC, frame_id="camera_optical"))
        pub_pts.publish(xyz_to_cloud_msg(xyz, {"intensity": intensity}, stamp=STAMP_SEC, frame_id="map"))
        print("PUBLISHED", flush=True)
        deadline = time.monotonic() + args.lifetime
        while not stdin_closed.is_set() and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        executor.shutdown()
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
    return 0


if __name__ == "__main__":
    sys.exit(main())
