"""rviz/mav_nav.rviz shows what the graph publishes, under the names the nodes use."""
from __future__ import annotations

from pathlib import Path

import yaml

RVIZ = Path(__file__).resolve().parents[1] / "rviz" / "mav_nav.rviz"


def test_rviz_config_parses_and_covers_the_graph_outputs():
    doc = yaml.safe_load(RVIZ.read_text())
    vm = doc["Visualization Manager"]
    assert vm["Global Options"]["Fixed Frame"] == "map"
    topics = {d["Topic"]["Value"]: d["Class"] for d in vm["Displays"] if "Topic" in d}
    expected = {
        "camera/image_raw": "rviz_default_plugins/Image",
        "depth/image": "rviz_default_plugins/Image",
        "depth/points": "rviz_default_plugins/PointCloud2",
        "map/points": "rviz_default_plugins/PointCloud2",
        "map/mesh": "rviz_default_plugins/Marker",
        "planner/primitives": "rviz_default_plugins/MarkerArray",
        "planner/path": "rviz_default_plugins/Path",
        "odom": "rviz_default_plugins/Odometry",
        "goal_pose": "rviz_default_plugins/Pose",
    }
    assert topics == expected
    # streams are best effort like the nodes' sensor QoS, or RViz would not connect
    for d in vm["Displays"]:
        if d.get("Topic", {}).get("Value") in ("camera/image_raw", "depth/image", "depth/points", "odom"):
            assert d["Topic"]["Reliability Policy"] == "Best Effort"
