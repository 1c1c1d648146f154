"""Core helpers of the depth nodes: radar extrinsics, stamp matching, disparity image metadata."""
from __future__ import annotations

import numpy as np
import pytest

from depth_nodes.camera import PinholeCamera
from depth_nodes.depth.disparity_image import disparity_image, disparity_range, valid_window
from depth_nodes.depth.interface import make_estimator
from depth_nodes.depth.radar_frame import radar_points_from_fields, radar_to_camera
from depth_nodes.geometry import pose_from_xyz_qxyzw
from depth_nodes.depth.stamp_match import ExactStampPairer, LatestSlot, StampedHistory
from depth_nodes.geometry import rot_to_quat
from depth_nodes.sim.radar import transform_radar_points
from depth_nodes.sim.rig import SensorRig


def test_radar_to_camera_matches_sim_rig_transform(rng):
    T = SensorRig().T_camera_radar
    T2 = pose_from_xyz_qxyzw(list(T[:3, 3]) + list(rot_to_quat(T[:3, :3])))
    np.testing.assert_allclose(T2, T, atol=1e-12)
    pts = rng.normal(0, 5, (50, 5)).astype(np.float32)
    out = radar_to_camera(pts, T2)
    np.testing.assert_allclose(out, transform_radar_points(pts, T), atol=1e-5)
    np.testing.assert_array_equal(out[:, 3:], pts[:, 3:])
    # radar x forward -> optical z forward
    assert radar_to_camera(np.array([[10, 0, 0, 0, 0]], np.float32), T2)[0, 2] == pytest.approx(10.02)


@pytest.mark.parametrize("values, match", [
    ([0, 0, 0, 0, 0, 1], "7 values"),
    ([0, 0, np.nan, 0, 0, 0, 1], "non-finite"),
    ([0, 0, 0, 0, 0, 0, 0], "unit length"),
    ([0, 0, 0, 0, 0, 0, 2], "unit length"),
])
def test_bad_extrinsic_is_rejected(values, match):
    with pytest.raises(ValueError, match=match):
        pose_from_xyz_qxyzw(values, "radar_to_camera_xyz_qxyzw")


def test_radar_fields_optional_velocity_and_nan_dropped():
    a = np.zeros(3, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("intensity", "f4")])
    a["x"] = [1, np.nan, 3]
    a["intensity"] = [5, 6, 7]
    pts = radar_points_from_fields(a)
    assert pts.shape == (2, 5) and pts.dtype == np.float32
    np.testing.assert_array_equal(pts[:, 0], [1, 3])
    np.testing.assert_array_equal(pts[:, 3], [0, 0])
    np.testing.assert_array_equal(pts[:, 4], [5, 7])
    with pytest.raises(ValueError, match="lacks field"):
        radar_points_from_fields(np.zeros(2, dtype=[("x", "f4"), ("y", "f4")]))
    with pytest.raises(ValueError, match=r"\(N, 5\)"):
        radar_to_camera(np.zeros((2, 3)), np.eye(4))


def test_latest_slot_keeps_only_the_newest_and_counts_drops():
    slot = LatestSlot()
    assert slot.take() is None
    assert slot.put(1) is False and slot.put(2) is True and slot.put(3) is True
    assert slot.take() == 3 and slot.take() is None
    assert (slot.dropped, slot.taken) == (2, 1)
    with pytest.raises(ValueError):
        slot.put(None)


def test_stamped_history_newest_within_age():
    hist = StampedHistory(capacity=3)
    for t in (100, 200, 300, 400):
        hist.add(t, f"r{t}")
    assert len(hist) == 3  # 100 evicted
    assert hist.newest_within(250, 60) == (300, "r300")
    assert hist.newest_within(410, 20) == (400, "r400")
    assert hist.newest_within(100, 50) is None
    assert hist.newest_within(1000, 100) is None


def test_exact_stamp_pairer_pairs_equal_stamps_newest_wins():
    p = ExactStampPairer(capacity=2)
    assert p.add("left", 1, "L1") is None
    assert p.add("left", 2, "L2") is None
    assert p.add("right", 3, "R3") is None
    assert p.add("right", 2, "R2") == (2, "L2", "R2")
    assert p.unpaired == 1  # L1 older than the pair
    assert p.add("left", 3, "L3") == (3, "L3", "R3")
    for t in (10, 11, 12):
        p.add("left", t, t)
    assert p.add("right", 10, "x") is None  # 10 was evicted (capacity 2)
    with pytest.raises(ValueError, match="side"):
        p.add("middle", 1, None)


def test_disparity_image_range_and_window():
    cam = PinholeCamera.from_fov(128, 96, 90.0)
    rng = disparity_range(make_estimator("sgbm"), cam.width)
    assert (rng.min_px, rng.max_px, rng.delta_px) == (0.25, 16.0, 1 / 16)
    depth = np.full((96, 128), np.nan, np.float32)
    depth[10:20, 30:50] = 0.8
    disp = disparity_image(depth, cam.fx, 0.1, rng)
    assert np.allclose(disp[10:20, 30:50], cam.fx * 0.1 / 0.8)
    assert np.all(disp[:10] == rng.min_px - 1)
    assert valid_window(disp, rng.min_px) == (30, 10, 20, 10)
    assert valid_window(np.full((4, 4), np.nan), 0.25) == (0, 0, 0, 0)
    with pytest.raises(ValueError, match="baseline"):
        disparity_image(depth, cam.fx, 0.0, rng)


def test_stereo_network_disparity_range_scales_with_network_size():
    est = make_estimator("stereo", weights="random-init", net_size=(64, 48), max_disparity=32)
    rng = disparity_range(est, 128, net_width=64)
    assert rng.max_px == pytest.approx(64.0)
    mono = make_estimator("mono", weights="random-init", net_size=(64, 48))
    with pytest.raises(ValueError, match="not a stereo matcher"):
        disparity_range(mono, 64)



def test_stamped_history_awaits_the_item_due_at_a_stamp():
    hist = StampedHistory(capacity=4)
    assert hist.awaits(1000)      # nothing yet: any item may be due
    hist.add(100, "a")
    assert hist.awaits(200) and not hist.awaits(100)  # one item: a newer one may be due
    hist.add(200, "b")
    assert hist.awaits(300)       # the item of 300 is due
    assert hist.awaits(280)       # within a quarter interval before the next one
    assert not hist.awaits(250)   # between items: the newest (200) is the one
    hist.add(300, "c")
    assert not hist.awaits(300)
    # items at half the image rate: an image between them waits for nothing
    slow = StampedHistory()
    for t in (0, 200, 400):
        slow.add(t, t)
    assert not slow.awaits(500) and slow.awaits(600)
    back = StampedHistory()
    back.add(5, "x")
    back.add(3, "y")
    assert not back.awaits(100)   # no increasing stamps: no interval


def test_stamped_history_replaces_a_repeated_newest_item():
    hist = StampedHistory(capacity=3)
    hist.add(100, "a")
    hist.add(200, "b")
    hist.add(200, "b again")  # the same message sent twice: one entry, the newer copy
    assert len(hist) == 2 and hist.newest_within(200, 0) == (200, "b again")
    assert hist.awaits(300)  # the interval stays 100, not 0
