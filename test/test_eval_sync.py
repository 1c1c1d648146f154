"""Frame assembly: radar tolerance, odometry interpolation/extrapolation, GT matching, bounded buffers."""
from __future__ import annotations

import numpy as np
import pytest

from depth_nodes.eval.sync import (
    MS,
    FrameAssembler,
    SyncConfig,
    assemble_frames,
    nearest_within,
    newest_at_or_before,
    pose_at,
)
from depth_nodes.geometry import make_pose, pose_from_xyz_yaw, rot_to_yaw

T0 = 10_000 * 1_000_000_000
VEL = np.array([2.0, -1.0, 0.5])  # m/s
YAW_RATE = 0.4  # rad/s


def linear_pose(t_ns: int) -> np.ndarray:
    dt = (t_ns - T0) / 1e9
    return pose_from_xyz_yaw(np.array([1.0, 2.0, 3.0]) + VEL * dt, 0.1 + YAW_RATE * dt)


def stream(n_images=10, image_period=100 * MS, odom_period=20 * MS, radar_offsets=None, gt=True):
    """Time-ordered (role, stamp, payload) events of a drone flying at constant velocity/yaw rate."""
    ev = [("camera_info", T0 - 5 * MS, "K")]
    for i in range(n_images):
        t = T0 + i * image_period
        ev.append(("image", t, f"img{i}"))
        if gt:
            ev.append(("gt_depth", t, f"depth{i}"))
        if radar_offsets is not None:
            ev.append(("radar", t - radar_offsets[i], f"radar{i}"))
    end = T0 + n_images * image_period
    for t in range(T0 - 40 * MS, end + 40 * MS, odom_period):
        ev.append(("odom", t, linear_pose(t)))
        ev.append(("gt_odom", t, linear_pose(t)))
    return sorted(ev, key=lambda e: e[1])


def test_pure_matchers():
    s = [10, 20, 30]
    assert newest_at_or_before(s, 25, 10) == 1
    assert newest_at_or_before(s, 25, 4) is None
    assert newest_at_or_before(s, 30, 0) == 2
    assert newest_at_or_before(s, 5, 100) is None  # nothing before
    assert nearest_within(s, 24) == 1 and nearest_within(s, 26) == 2
    assert nearest_within(s, 25) == 2  # tie -> later
    assert nearest_within(s, 26, 3) is None
    assert nearest_within([], 5) is None
    with pytest.raises(ValueError, match="sorted"):
        nearest_within([3, 1], 2)


def test_pose_interpolation_exact_for_linear_motion():
    stamps = [T0 + k * 50 * MS for k in range(4)]
    poses = np.stack([linear_pose(t) for t in stamps])
    for t in (T0 + 10 * MS, T0 + 77 * MS, T0 + 149 * MS, stamps[2]):
        pose, reason = pose_at(stamps, poses, t)
        assert reason is None
        np.testing.assert_allclose(pose[:3, 3], linear_pose(t)[:3, 3], atol=1e-9)
        # geometry.slerp_quat switches to normalised lerp for tiny angles (error ~1e-8 rad)
        assert rot_to_yaw(pose[:3, :3]) == pytest.approx(rot_to_yaw(linear_pose(t)[:3, :3]), abs=1e-6)
    # constant-velocity extrapolation inside the limit is exact too
    t = stamps[-1] + 30 * MS
    pose, reason = pose_at(stamps, poses, t)
    assert reason is None
    np.testing.assert_allclose(pose[:3, 3], linear_pose(t)[:3, 3], atol=1e-9)


def test_pose_extrapolation_and_gaps_refused():
    stamps = [T0, T0 + 50 * MS]
    poses = np.stack([linear_pose(t) for t in stamps])
    pose, reason = pose_at(stamps, poses, T0 + 50 * MS + 51 * MS)
    assert pose is None and "extrapolation" in reason and "after the last" in reason
    pose, reason = pose_at(stamps, poses, T0 - 60 * MS)
    assert pose is None and "before the first" in reason
    gap_stamps = [T0, T0 + 900 * MS]
    gap_poses = np.stack([linear_pose(t) for t in gap_stamps])
    pose, reason = pose_at(gap_stamps, gap_poses, T0 + 400 * MS)
    assert pose is None and "gap" in reason
    assert pose_at([], np.zeros((0, 4, 4)), T0) == (None, "no odometry samples")
    with pytest.raises(ValueError, match="poses must have shape"):
        pose_at(stamps, np.zeros((3, 4, 4)), T0)


def test_frames_radar_within_tolerance_and_poses():
    # radar 0..120 ms before each image: > 60 ms must be rejected
    offsets = [0, 10 * MS, 59 * MS, 60 * MS, 61 * MS, 120 * MS, -5 * MS, 30 * MS, 0, 200 * MS]
    # images 300 ms apart so no image's radar falls in a neighbour's window
    frames = list(assemble_frames(stream(image_period=300 * MS, radar_offsets=offsets)))
    assert [f.index for f in frames] == list(range(10))
    assert [f.image for f in frames] == [f"img{i}" for i in range(10)]
    got = [f.radar for f in frames]
    assert got[0] == "radar0" and got[1] == "radar1" and got[2] == "radar2" and got[3] == "radar3"
    assert got[4] is None and "radar" in frames[4].missing
    assert got[5] is None
    # radar stamped 5 ms *after* image 6 is not used for it
    assert got[6] is None and frames[6].radar_stamp_ns is None
    assert got[7] == "radar7" and frames[7].radar_stamp_ns == frames[7].stamp_ns - 30 * MS
    assert got[9] is None
    for f in frames:
        assert f.camera_info == "K"
        assert f.gt_depth == f"depth{f.index}"
        np.testing.assert_allclose(f.pose, linear_pose(f.stamp_ns), atol=1e-6)
        np.testing.assert_allclose(f.gt_pose, linear_pose(f.stamp_ns), atol=1e-6)
        assert "odom" not in f.missing and "gt_depth" not in f.missing


def test_no_odom_after_end_refuses_pose():
    ev = [("image", T0, "a"), ("odom", T0 - 200 * MS, make_pose()), ("odom", T0 - 100 * MS, make_pose())]
    (frame,) = list(assemble_frames(sorted(ev, key=lambda e: e[1])))
    assert frame.pose is None and "extrapolation" in frame.missing["odom"]
    assert frame.missing["gt_odom"] == "no gt_odom messages"
    assert frame.missing["radar"] == "no radar messages"


def test_gt_depth_tolerance_and_stereo_key():
    cfg = SyncConfig(key_role="left")
    ev = [("left_info", T0, "KL"), ("right_info", T0, "KR"),
          ("left", T0, "L0"), ("right", T0, "R0"), ("gt_depth", T0 + 2 * MS, "D0"),
          ("left", T0 + 100 * MS, "L1"), ("right", T0 + 100 * MS + 3 * MS, "R1"),
          ("gt_depth", T0 + 100 * MS, "D1")]
    frames = list(assemble_frames(sorted(ev, key=lambda e: e[1]), cfg))
    assert [f.image for f in frames] == ["L0", "L1"]
    assert frames[0].right == "R0" and frames[0].camera_info == "KL" and frames[0].right_info == "KR"
    assert frames[0].gt_depth is None and "gt_depth" in frames[0].missing  # 2 ms > 1 ms
    assert frames[1].right is None and frames[1].gt_depth == "D1"


def test_late_and_duplicate_images_and_bad_poses_counted():
    asm = FrameAssembler(SyncConfig(hold_ns=10 * MS))
    out = asm.push("image", T0, "a")
    out += asm.push("image", T0, "dup")
    out += asm.push("odom", T0 + 50 * MS, np.full((4, 4), np.nan))
    out += asm.push("image", T0 - 1, "late")  # older than an emitted frame
    out += asm.push("whatever", T0, 1)
    out += asm.flush()
    assert [f.image for f in out] == ["a"]
    assert asm.stats["duplicate_images_dropped"] == 1
    assert asm.stats["late_images_dropped"] == 1
    assert asm.stats["invalid_poses_dropped"] == 1
    assert asm.stats["ignored_messages"] == 1
    with pytest.raises(ValueError, match="stamp_ns"):
        asm.push("image", 1.5, "x")
    with pytest.raises(ValueError, match="key_role"):
        SyncConfig(key_role="depth")
    with pytest.raises(ValueError, match="hold_ns"):
        SyncConfig(hold_ns=-1)


def test_buffers_stay_bounded_on_long_streams():
    asm = FrameAssembler()
    n = 0
    for k in range(3000):  # 60 s of 50 Hz odometry + radar, 10 Hz images
        t = T0 + k * 20 * MS
        n += len(asm.push("odom", t, linear_pose(t)))
        n += len(asm.push("radar", t, k))
        if k % 5 == 0:
            n += len(asm.push("image", t, k))
        assert len(asm._buffers["odom"]) < 60 and len(asm._buffers["radar"]) < 60
        assert len(asm._pending) <= 5
    n += len(asm.flush())
    assert n == 600 and asm.stats["frames"] == 600


def test_max_pending_forces_emission():
    asm = FrameAssembler(SyncConfig(hold_ns=10**12, max_pending=4))
    out = []
    for i in range(10):
        out += asm.push("image", T0 + i, i)
    assert [f.image for f in out] == list(range(6)) and len(asm._pending) == 4
