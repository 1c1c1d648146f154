"""BagSource / BagSink: both storages, role remaps, header stamps, ordering, clear errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
from rosbags.rosbag2 import Writer
from rosbags.rosbag2.enums import StoragePlugin
from rosbags.typesys import Stores, get_typestore

from depth_nodes.eval.bagio import DEFAULT_TOPICS, BagSink, BagSource, header_stamp_ns, match_topic

STORAGES = ("mcap", "sqlite3")
REMAP = {"image": "/drone1/cam/image", "camera_info": "/drone1/cam/info", "odom": "/drone1/odom",
         "radar": "/drone1/radar"}
N_IMAGES = 5
N_ODOM = 11
IMAGE_LATENCY_NS = 30_000_000  # images are logged 30 ms after their header stamp


def _ts():
    return get_typestore(Stores.ROS2_KILTED)


def _header(ts, stamp_ns: int, frame: str = "cam"):
    Time = ts.types["builtin_interfaces/msg/Time"]
    Header = ts.types["std_msgs/msg/Header"]
    return Header(stamp=Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000), frame_id=frame)


def make_image(ts, stamp_ns: int, value: int = 7, h: int = 4, w: int = 6):
    Image = ts.types["sensor_msgs/msg/Image"]
    return Image(header=_header(ts, stamp_ns), height=h, width=w, encoding="rgb8", is_bigendian=0,
                 step=w * 3, data=np.full(h * w * 3, value, dtype=np.uint8))


def make_odom(ts, stamp_ns: int, x: float):
    m = ts.types
    pose = m["geometry_msgs/msg/Pose"](position=m["geometry_msgs/msg/Point"](x=x, y=0.0, z=1.0),
                                       orientation=m["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0))
    pwc = m["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=np.zeros(36))
    vec = m["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0)
    twc = m["geometry_msgs/msg/TwistWithCovariance"](twist=m["geometry_msgs/msg/Twist"](linear=vec, angular=vec),
                                                     covariance=np.zeros(36))
    return m["nav_msgs/msg/Odometry"](header=_header(ts, stamp_ns, "map"), child_frame_id="base_link",
                                      pose=pwc, twist=twc)


def write_bag(path, storage: str):
    """Images at 10 Hz logged late, odometry at 20 Hz, one String without a header; no ground truth."""
    ts = _ts()
    t0 = 1_700_000_000 * 1_000_000_000
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as w:
        c_img = w.add_connection(REMAP["image"], "sensor_msgs/msg/Image", typestore=ts)
        c_odom = w.add_connection(REMAP["odom"], "nav_msgs/msg/Odometry", typestore=ts)
        c_note = w.add_connection("/drone1/note", "std_msgs/msg/String", typestore=ts)
        events = []
        for i in range(N_IMAGES):
            stamp = t0 + i * 100_000_000
            events.append((stamp + IMAGE_LATENCY_NS, c_img, ts.serialize_cdr(make_image(ts, stamp, i), c_img.msgtype)))
        for i in range(N_ODOM):
            stamp = t0 + i * 50_000_000
            events.append((stamp, c_odom, ts.serialize_cdr(make_odom(ts, stamp, 0.1 * i), c_odom.msgtype)))
        note = ts.types["std_msgs/msg/String"](data="hello")
        events.append((t0 + 5, c_note, ts.serialize_cdr(note, c_note.msgtype)))
        for log_ns, conn, raw in sorted(events, key=lambda e: e[0]):
            w.write(conn, log_ns, raw)
    return t0


@pytest.fixture(params=STORAGES)
def bag(request, tmp_path):
    path = tmp_path / f"bag_{request.param}"
    t0 = write_bag(path, request.param)
    return path, t0, request.param


def test_match_topic_namespaces_and_slashes():
    topics = ["/drone1/camera/image_raw", "/odom", "/a/radar/points", "/b/radar/points"]
    assert match_topic("camera/image_raw", topics) == "/drone1/camera/image_raw"
    assert match_topic("odom", topics) == "/odom"
    assert match_topic("/odom", ["odom"]) == "odom"
    assert match_topic("image_raw/x", topics) is None
    assert match_topic("mera/image_raw", topics) is None  # namespace boundaries only
    with pytest.raises(ValueError, match="ambiguous"):
        match_topic("radar/points", topics)


def test_info_counts_types_roles(bag):
    path, t0, storage = bag
    src = BagSource(path, topics=REMAP)
    info = src.info()
    assert info.storage == storage
    counts = {t.topic: t.count for t in info.topics}
    assert counts == {REMAP["image"]: N_IMAGES, REMAP["odom"]: N_ODOM, "/drone1/note": 1}
    types = {t.topic: t.msgtype for t in info.topics}
    assert types[REMAP["image"]] == "sensor_msgs/msg/Image"
    assert info.roles == {"image": REMAP["image"], "odom": REMAP["odom"]}
    assert not info.has_ground_truth
    assert info.start_ns == t0
    assert info.duration_s == pytest.approx(0.5, abs=1e-3)  # last odometry at t0 + 0.5 s
    d = info.as_dict()
    json.dumps(d)
    assert d["message_count"] == N_IMAGES + N_ODOM + 1


def test_messages_ordered_by_header_stamp_with_roles(bag):
    path, t0, _ = bag
    src = BagSource(path, topics=REMAP)
    items = list(src.messages())
    roles = [r for r, *_ in items]
    assert roles.count("image") == N_IMAGES and roles.count("odom") == N_ODOM
    stamps = [s for _, _, s, _ in items]
    assert stamps == sorted(stamps)
    images = [(s, m) for r, _, s, m in items if r == "image"]
    # header stamp (not the 30 ms later log time) is reported
    assert [s for s, _ in images] == [t0 + i * 100_000_000 for i in range(N_IMAGES)]
    assert [int(m.data[0]) for _, m in images] == list(range(N_IMAGES))
    assert all(t == REMAP["image"] for r, t, _, _ in items if r == "image")
    only_odom = list(src.messages(["odom"]))
    assert {r for r, *_ in only_odom} == {"odom"} and len(only_odom) == N_ODOM


def test_log_time_used_without_header(bag):
    path, t0, _ = bag
    src = BagSource(path, topics={"note": "note"})  # namespace prefix /drone1 matched
    (item,) = list(src.messages(["note"]))
    assert item[0] == "note" and item[1] == "/drone1/note" and item[2] == t0 + 5
    assert item[3].data == "hello"


def test_missing_role_error_lists_bag_topics(bag):
    path, *_ = bag
    src = BagSource(path, topics=REMAP)
    with pytest.raises(ValueError) as err:
        list(src.messages(["image", "gt_depth"]))
    text = str(err.value)
    assert "gt_depth" in text and DEFAULT_TOPICS["gt_depth"] in text
    assert REMAP["image"] in text and "/drone1/note" in text
    # with default names nothing but the namespaced note could match
    assert "image" not in BagSource(path).roles


def test_missing_and_invalid_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        BagSource(tmp_path / "nope")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(ValueError, match="not a rosbag2 bag"):
        BagSource(tmp_path / "empty_dir")
    txt = tmp_path / "notes.txt"
    txt.write_text("hi")
    with pytest.raises(ValueError, match="not a rosbag2 bag"):
        BagSource(txt)
    for name in ("fake.mcap", "fake.db3"):
        fake = tmp_path / name
        fake.write_bytes(b"not a bag file at all" * 10)
        with pytest.raises(ValueError, match="not a readable rosbag2 bag"):
            BagSource(fake)


def test_bad_topic_map(bag):
    path, *_ = bag
    with pytest.raises(ValueError, match="topics must be a dict"):
        BagSource(path, topics="image")
    with pytest.raises(ValueError, match=r"topics\['image'\]"):
        BagSource(path, topics={"image": ""})
    src = BagSource(path, topics={**REMAP, "odom": None})
    assert "odom" not in src.roles


@pytest.mark.parametrize("storage", STORAGES)
def test_single_storage_file_opens(tmp_path, storage):
    path = tmp_path / "b"
    write_bag(path, storage)
    (f,) = [p for p in path.iterdir() if p.suffix in (".mcap", ".db3")]
    src = BagSource(f, topics=REMAP)
    assert sum(1 for r, *_ in src.messages(["image"])) == N_IMAGES


@pytest.mark.parametrize("storage", STORAGES)
def test_sink_roundtrip_and_custom_type(tmp_path, storage):
    path = tmp_path / "out"
    with BagSink(path, storage=storage) as sink:
        ts = sink.typestore
        sink.add_topic("camera/image_raw", "sensor_msgs/msg/Image")
        sink.add_topic("sim/world_spec", "std_msgs/msg/String", latched=True)
        sink.add_topic("custom", "my_pkg/msg/Blip", msgdef="std_msgs/Header header\nfloat64 level\n")
        for i in range(3):
            sink.write("camera/image_raw", 1000 + i, make_image(ts, 2000 + i, value=i))
        sink.write("sim/world_spec", 5, ts.types["std_msgs/msg/String"](data=json.dumps({"seed": 3})))
        blip = ts.types["my_pkg/msg/Blip"](header=_header(ts, 42), level=2.5)
        sink.write("custom", 42, blip)
        with pytest.raises(ValueError, match="was not added"):
            sink.write("nope", 1, blip)
        with pytest.raises(ValueError, match="stamp_ns"):
            sink.write("custom", -1, blip)
        with pytest.raises(ValueError, match="cannot serialise"):
            sink.write("custom", 1, "not a message")
        assert sink.counts["camera/image_raw"] == 3
    with pytest.raises(ValueError, match="already exists"):
        BagSink(path)
    # a fresh reader learns the custom type from the bag's own definitions
    src = BagSource(path, topics={"blip": "custom"})
    info = src.info()
    assert info.storage == storage
    assert {t.topic: t.count for t in info.topics} == {"camera/image_raw": 3, "sim/world_spec": 1, "custom": 1}
    items = list(src.messages())
    by_role = {}
    for role, _, stamp, msg in items:
        by_role.setdefault(role, []).append((stamp, msg))
    assert [s for s, _ in by_role["image"]] == [2000, 2001, 2002]
    assert json.loads(by_role["world_spec"][0][1].data) == {"seed": 3}
    assert by_role["blip"][0][1].level == 2.5 and by_role["blip"][0][0] == 42


def test_header_stamp_ns_duck_typed():
    ts = _ts()
    assert header_stamp_ns(make_image(ts, 3_000_000_123)) == 3_000_000_123
    assert header_stamp_ns(ts.types["std_msgs/msg/String"](data="x")) is None
    assert header_stamp_ns(make_image(ts, 0)) is None  # unset stamp: callers fall back to log time


@pytest.mark.parametrize("storage", STORAGES)
def test_unknown_type_skipped_with_one_warning(tmp_path, storage, caplog):
    path = tmp_path / "u"
    ts = _ts()
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as w:
        c_img = w.add_connection("/cam/image", "sensor_msgs/msg/Image", typestore=ts)
        c_bad = w.add_connection("/mystery", "foo_msgs/msg/Bar", msgdef="", rihs01="RIHS01_" + "0" * 64)
        for i in range(3):
            w.write(c_img, 10 + i, ts.serialize_cdr(make_image(ts, 10 + i), c_img.msgtype))
            w.write(c_bad, 11 + i, b"\x00\x01\x00\x00garbage")
    with caplog.at_level("WARNING", logger="depth_nodes.eval.bagio"):
        src = BagSource(path, topics={"image": "cam/image", "mystery": "mystery"})
    warnings = [r for r in caplog.records if "foo_msgs/msg/Bar" in r.getMessage()]
    assert len(warnings) == 1 and "skipping" in warnings[0].getMessage()
    items = list(src.messages())
    assert [r for r, *_ in items] == ["image"] * 3
    with pytest.raises(ValueError, match="unknown message type"):
        src.require(["mystery"])


def test_ambiguous_default_topic_only_fails_when_used(tmp_path):
    ts = _ts()
    path = tmp_path / "two_drones"
    with BagSink(path) as sink:
        for ns in ("d1", "d2"):
            sink.add_topic(f"/{ns}/odom", "nav_msgs/msg/Odometry")
            sink.write(f"/{ns}/odom", 1, make_odom(ts, 1, 0.0))
        sink.add_topic("/d1/camera/image_raw", "sensor_msgs/msg/Image")
        sink.write("/d1/camera/image_raw", 1, make_image(ts, 1))
    src = BagSource(path)
    assert src.roles == {"image": "/d1/camera/image_raw"}
    with pytest.raises(ValueError, match="ambiguous"):
        src.require("odom")
    with pytest.raises(ValueError, match="ambiguous"):
        BagSource(path, topics={"odom": "odom"})
    assert BagSource(path, topics={"odom": "/d2/odom"}).roles["odom"] == "/d2/odom"


def _record_sim_like_bag(path, storage):
    """A bag with the simulator's default topic names, written through BagSink + codec field writers."""
    from depth_nodes.camera import PinholeCamera
    from depth_nodes.codec import (array_to_image_fields, matrix_to_pose_fields, pinhole_to_camera_info_fields,
                                   xyz_to_cloud_fields)
    from depth_nodes.geometry import pose_from_xyz_yaw

    cam = PinholeCamera(width=8, height=6, K=np.array([[5.0, 0, 4], [0, 5.0, 3], [0, 0, 1]]))
    t0 = 2_000_000_000
    with BagSink(path, storage=storage) as sink:
        for topic, msgtype in (("camera/image_raw", "sensor_msgs/msg/Image"),
                               ("camera/camera_info", "sensor_msgs/msg/CameraInfo"),
                               ("radar/points", "sensor_msgs/msg/PointCloud2"),
                               ("odom", "nav_msgs/msg/Odometry"),
                               ("ground_truth/depth", "sensor_msgs/msg/Image")):
            sink.add_topic(topic, msgtype)
        sink.add_topic("sim/world_spec", "std_msgs/msg/String", latched=True)
        sink.write_fields("sim/world_spec", t0, {"data": json.dumps({"world": "forest", "seed": 1})})
        for k in range(11):  # odometry at 20 Hz moving +x at 1 m/s
            t = t0 + k * 50_000_000
            pose = matrix_to_pose_fields(pose_from_xyz_yaw([k * 0.05, 0, 1], 0.0))
            sink.write_fields("odom", t, {"pose": {"pose": pose}}, frame_id="map")
        for i in range(4):  # images at 10 Hz, radar 20 ms before each, GT depth with the same stamp
            t = t0 + i * 100_000_000
            rgb = np.full((6, 8, 3), 10 * i, dtype=np.uint8)
            sink.write_fields("camera/image_raw", t, array_to_image_fields(rgb, "rgb8"), frame_id=cam.frame_id)
            sink.write_fields("camera/camera_info", t, pinhole_to_camera_info_fields(cam), frame_id=cam.frame_id)
            sink.write_fields("radar/points", t - 20_000_000,
                              xyz_to_cloud_fields(np.array([[0.0, 0.0, 3.0 + i], [np.nan, 0, 0]], np.float32)),
                              frame_id=cam.frame_id)
            sink.write_fields("ground_truth/depth", t,
                              array_to_image_fields(np.full((6, 8), 2.5 + i, np.float32), "32FC1"),
                              frame_id=cam.frame_id)
    return t0, cam


@pytest.mark.parametrize("storage", STORAGES)
def test_recorded_bag_replays_into_frames(tmp_path, storage):
    from depth_nodes.eval.decode import Cloud
    from depth_nodes.eval.frames import BagFrames, first_payload

    path = tmp_path / "sim"
    t0, cam = _record_sim_like_bag(path, storage)
    src = BagSource(path)
    info = src.info()
    assert info.has_ground_truth and info.roles["image"] == "camera/image_raw"
    assert first_payload(src, "world_spec") == {"world": "forest", "seed": 1}
    assert first_payload(src, "rig") is None
    replay = BagFrames(src, progress=False)
    frames = list(replay)
    assert replay.stats["frames"] == 4 and replay.stats["decode_errors"] == {}
    assert set(replay.stats["roles"]) == {"image", "camera_info", "radar", "odom", "gt_depth"}
    assert [f.stamp_ns for f in frames] == [t0 + i * 100_000_000 for i in range(4)]
    for i, f in enumerate(frames):
        assert f.image.shape == (6, 8, 3) and int(f.image[0, 0, 0]) == 10 * i
        assert f.camera_info.width == 8 and np.allclose(f.camera_info.K, cam.K)
        assert isinstance(f.radar, Cloud) and f.radar.xyz.shape == (1, 3) and f.radar.xyz[0, 2] == 3.0 + i
        assert f.radar_stamp_ns == f.stamp_ns - 20_000_000
        assert np.allclose(f.gt_depth, 2.5 + i)
        np.testing.assert_allclose(f.pose[:3, 3], [i * 0.1, 0, 1], atol=1e-9)
        assert f.gt_pose is None and "gt_odom" in f.missing


def test_bag_info_cli(tmp_path, capsys):
    from depth_nodes.cli import main

    path = tmp_path / "b"
    write_bag(path, "mcap")
    remaps = [f"--topic={r}={t}" for r, t in REMAP.items()]
    assert main(["eval", "bag-info", str(path), "--json", *remaps]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["has_ground_truth"] is False and out["storage"] == "mcap"
    assert out["roles"]["image"] == REMAP["image"] and out["message_count"] == N_IMAGES + N_ODOM + 1
    assert {t["topic"]: t["count"] for t in out["topics"]}[REMAP["odom"]] == N_ODOM
    assert main(["eval", "bag-info", str(path)]) == 0
    text = capsys.readouterr().out
    assert "ground truth: no" in text and "/drone1/cam/image" in text
    assert main(["eval", "bag-info", str(tmp_path / "missing")]) == 2
    assert main(["eval", "bag-info", str(path), "--topic", "image"]) == 2


def test_bag_frames_requires_key_role(bag):
    from depth_nodes.eval.frames import BagFrames
    from depth_nodes.eval.sync import SyncConfig

    path, *_ = bag
    with pytest.raises(ValueError, match="role\\(s\\) left"):
        BagFrames(BagSource(path, topics=REMAP), SyncConfig(key_role="left"))
    frames = list(BagFrames(BagSource(path, topics=REMAP)))
    assert len(frames) == N_IMAGES and all(f.pose is not None for f in frames)
    assert all(f.camera_info is None and f.missing["camera_info"] == "no camera_info messages" for f in frames)


def test_build_message_rules_and_errors():
    from depth_nodes.codec import PointFieldSpec
    from depth_nodes.bagmsg import build_message

    ts = _ts()
    odom = build_message(ts, "nav_msgs/msg/Odometry",
                         {"pose": {"pose": {"position": (1.0, 2.0, 3.0), "orientation": (0, 0, 0, 1)}}},
                         stamp_ns=5_000_000_123, frame_id="map")
    assert odom.header.stamp.sec == 5 and odom.header.stamp.nanosec == 123 and odom.header.frame_id == "map"
    assert odom.pose.pose.position.y == 2.0 and odom.pose.covariance.shape == (36,)
    cloud = build_message(ts, "sensor_msgs/msg/PointCloud2",
                          {"fields": [PointFieldSpec("x", 0, 7, 1)], "data": b"\x00\x00\x80\x3f", "width": 1})
    assert cloud.fields[0].name == "x" and cloud.data.dtype == np.uint8 and cloud.data.size == 4
    raw = ts.serialize_cdr(cloud, "sensor_msgs/msg/PointCloud2")  # fully formed: serialises
    assert ts.deserialize_cdr(raw, "sensor_msgs/msg/PointCloud2").fields[0].datatype == 7
    with pytest.raises(ValueError, match=r"has no field\(s\) \['colour'\]"):
        build_message(ts, "sensor_msgs/msg/Image", {"colour": 1})
    with pytest.raises(ValueError, match=r"CameraInfo.k must have 9 elements, got 4"):
        build_message(ts, "sensor_msgs/msg/CameraInfo", {"k": [1, 2, 3, 4]})
    with pytest.raises(ValueError, match="encoding must be a str"):
        build_message(ts, "sensor_msgs/msg/Image", {"encoding": 5})
    with pytest.raises(ValueError, match="unknown message type"):
        build_message(ts, "nope_msgs/msg/X")
