"""Simulator outputs: dataset format, rosbag2 recording (mcap + sqlite3), preview and CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_typestore

from depth_nodes.cli import main
from depth_nodes.sim.bag import T0_NS, TOPICS, read_world_spec, record_bag
from depth_nodes.sim.dataset import NPZ_KEYS, load_frame, world_specs, write_dataset
from depth_nodes.sim.world import WorldSpec


def test_dataset_exact_format_and_determinism(tmp_path):
    m = write_dataset(tmp_path / "a", 2, 2, kinds=("forest", "indoor"), seed=3, width=96, height=72,
                      progress=False)
    man = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert man == json.loads(json.dumps(m))
    assert man["version"] == 1
    assert [f["file"] for f in man["frames"]] == ["frames/000_0000.npz", "frames/000_0001.npz",
                                                  "frames/001_0000.npz", "frames/001_0001.npz"]
    assert man["frames"][2]["world"]["kind"] == "indoor" and man["frames"][3]["frame"] == 1
    assert WorldSpec.from_dict(man["frames"][0]["world"]).kind == "forest"
    cam = man["camera"]
    assert cam["width"] == 96 and cam["height"] == 72 and len(cam["K"]) == 9 and cam["baseline"] == 0.1
    with np.load(tmp_path / "a" / "frames" / "000_0001.npz", allow_pickle=False) as z:
        assert sorted(z.files) == sorted(NPZ_KEYS)
        assert z["rgb"].shape == (72, 96, 3) and z["rgb"].dtype == np.uint8
        assert z["right"].shape == (72, 96, 3) and z["right"].dtype == np.uint8
        assert z["depth"].shape == (72, 96) and z["depth"].dtype == np.float32
        assert z["radar"].ndim == 2 and z["radar"].shape[1] == 5 and z["radar"].dtype == np.float32
        assert z["K"].shape == (3, 3) and z["K"].dtype == np.float64
        assert z["baseline"].shape == () and z["baseline"].dtype == np.float64
        assert z["T_world_cam"].shape == (4, 4) and z["T_world_cam"].dtype == np.float64
        np.testing.assert_allclose(z["K"].ravel(), cam["K"])
        depth = z["depth"]
        assert np.isfinite(depth).any() and np.nanmin(depth) > 0
        # radar in the LEFT CAMERA OPTICAL frame: mostly in front (z > 0)
        assert np.mean(z["radar"][:, 2] > 0) > 0.9
    write_dataset(tmp_path / "b", 2, 2, kinds=("forest", "indoor"), seed=3, width=96, height=72, progress=False)
    for f in man["frames"]:
        a, b = load_frame(tmp_path / "a" / f["file"]), load_frame(tmp_path / "b" / f["file"])
        for k in NPZ_KEYS:
            assert a[k].tobytes() == b[k].tobytes(), (f["file"], k)
    with pytest.raises(ValueError, match="kinds"):
        world_specs(2, kinds=("mars",))


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_recorded_bag_reads_back(tmp_path, storage):
    out = tmp_path / "bag"
    spec = WorldSpec("urban", 2, "sparse")
    summary = record_bag(out, spec, duration_s=1.0, storage=storage, progress=False)
    assert not summary["collided"]
    ts = get_typestore(Stores.ROS2_KILTED)
    counts: dict[str, int] = {}
    stamps: dict[str, list[int]] = {}
    with Reader(out) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        assert types == TOPICS
        for conn, t_ns, raw in reader.messages():
            counts[conn.topic] = counts.get(conn.topic, 0) + 1
            msg = ts.deserialize_cdr(raw, conn.msgtype)
            stamps.setdefault(conn.topic, []).append(t_ns)
            if conn.topic == "sim/world_spec":
                assert WorldSpec.from_dict(msg.data) == spec
            elif conn.topic == "sim/rig":
                assert json.loads(msg.data)["frames"]["radar"] == "radar"
            elif conn.topic == "camera/image_raw":
                assert (msg.encoding, msg.width, msg.height, msg.step) == ("rgb8", 320, 240, 960)
                assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == t_ns
            elif conn.topic == "ground_truth/depth":
                d = np.frombuffer(msg.data.tobytes(), np.float32).reshape(240, 320)
                assert msg.encoding == "32FC1" and np.nanmax(d) > 0
            elif conn.topic == "stereo/right/camera_info":
                assert msg.p[3] == pytest.approx(-msg.p[0] * 0.1)
                assert msg.header.frame_id == "camera_right_optical_frame"
            elif conn.topic == "radar/points":
                assert [f.name for f in msg.fields] == ["x", "y", "z", "velocity", "intensity"]
                assert msg.header.frame_id == "radar" and msg.point_step == 20
                assert len(msg.data) == msg.width * 20 and msg.width > 0
            elif conn.topic == "odom":
                assert (msg.header.frame_id, msg.child_frame_id) == ("map", "base_link")
    assert counts["odom"] == counts["ground_truth/odom"] == 50
    for topic in ("camera/image_raw", "camera/camera_info", "stereo/left/image_rect", "stereo/right/image_rect",
                  "ground_truth/depth", "radar/points"):
        assert counts[topic] == 10, topic
    assert counts["sim/world_spec"] == counts["sim/rig"] == 1
    cam_t = np.array(stamps["camera/image_raw"])
    assert cam_t[0] == T0_NS and np.all(np.diff(cam_t) == 100_000_000)
    assert np.all(np.diff(np.array(stamps["odom"])) == 20_000_000)
    assert summary["counts"]["radar/points"] == 10
    assert read_world_spec(out) == spec
    meta = yaml.safe_load((out / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert WorldSpec.from_dict(meta["custom_data"]["depth_nodes.world_spec"]) == spec
    (out / "metadata.yaml").write_text((out / "metadata.yaml").read_text().replace("depth_nodes.world_spec", "x"))
    assert read_world_spec(out) == spec          # falls back to the sim/world_spec topic
    with pytest.raises(ValueError, match="exists"):
        record_bag(out, spec, duration_s=1.0, storage=storage, progress=False)


def test_cli_preview_and_bad_input(tmp_path, capsys):
    assert main(["sim", "preview", "--world", "indoor", "--seed", "1", "--out", str(tmp_path / "p")]) == 0
    names = sorted(p.name for p in (tmp_path / "p").iterdir())
    assert names == ["camera.png", "depth.png", "radar.png", "stereo.png", "topdown.png"]
    assert all((tmp_path / "p" / n).stat().st_size > 5000 for n in names)
    assert main(["sim", "record", "--world", "forest", "--density", "lots", "--out", str(tmp_path / "b")]) == 2
    assert main(["sim", "dataset", "--worlds", "1", "--frames", "1", "--kinds", "urban", "--width", "64",
                 "--height", "48", "--out", str(tmp_path / "d")]) == 0
    man = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert man["frames"][0]["world"]["kind"] == "urban" and man["camera"]["width"] == 64
    assert main(["sim", "dataset", "--kinds", "moon", "--out", str(tmp_path / "e")]) == 2


def test_cli_bench_render_json(capsys):
    assert main(["bench", "render", "--json", "--trees", "30", "--repeat", "2", "--width", "64",
                 "--height", "48"]) == 0
    out = json.loads(capsys.readouterr().out.strip())
    assert out["rgbd_320x240_ms"] > 0 and out["all_sensors_320x240_ms"] > 0
    assert out["seed"] == 0 and "threads" in out and out["data"]["kind"] == "forest"
