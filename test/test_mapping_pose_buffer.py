"""PoseBuffer: interpolation, ordering policy, extrapolation refusal, bounds."""
from __future__ import annotations

import numpy as np
import pytest

from depth_nodes.geometry import pose_from_xyz_yaw, rot_to_yaw
from depth_nodes.mapping import PoseBuffer


def filled(n: int = 5, **kw) -> PoseBuffer:
    buf = PoseBuffer(**kw)
    for i in range(n):
        assert buf.add(10.0 + 0.1 * i, pose_from_xyz_yaw((float(i), 0.0, 1.0), 0.2 * i))
    return buf


def test_interpolates_translation_and_rotation():
    buf = filled()
    T = buf.lookup(10.15)
    np.testing.assert_allclose(T[:3, 3], (1.5, 0.0, 1.0), atol=1e-9)
    assert rot_to_yaw(T[:3, :3]) == pytest.approx(0.3, abs=1e-9)
    np.testing.assert_allclose(buf.lookup(10.2), pose_from_xyz_yaw((2.0, 0.0, 1.0), 0.4), atol=1e-12)


def test_out_of_order_samples_are_sorted_and_duplicates_rejected():
    buf = PoseBuffer()
    for t in (3.0, 1.0, 2.0):
        assert buf.add(t, pose_from_xyz_yaw((t, 0.0, 0.0), 0.0))
    assert not buf.add(2.0, pose_from_xyz_yaw((99.0, 0.0, 0.0), 0.0))
    assert len(buf) == 3 and buf.span == (1.0, 3.0)
    np.testing.assert_allclose(buf.lookup(1.5)[:3, 3], (1.5, 0.0, 0.0))
    assert buf.latest()[0] == 3.0


def test_extrapolation_refused_beyond_limit():
    buf = filled(max_extrapolation_s=0.05)
    np.testing.assert_allclose(buf.lookup(10.43)[:3, 3], (4.0, 0.0, 1.0))  # hold within the limit
    np.testing.assert_allclose(buf.lookup(9.97)[:3, 3], (0.0, 0.0, 1.0))
    with pytest.raises(ValueError, match=r"10\.500000.*\[10\.000000, 10\.400000\]"):
        buf.lookup(10.5)
    with pytest.raises(ValueError, match="outside"):
        buf.lookup(9.9)
    with pytest.raises(ValueError, match="empty"):
        PoseBuffer().lookup(1.0)


def test_bounded_by_age_and_count():
    buf = filled(50, max_age_s=1.0)
    oldest, newest = buf.span
    assert newest - oldest <= 1.0 + 1e-9 and len(buf) <= 11
    assert not buf.add(oldest - 5.0, np.eye(4))  # older than the window: rejected
    small = filled(20, max_samples=4)
    assert len(small) == 4 and small.span[1] == pytest.approx(11.9)


def test_bad_input_raises():
    buf = PoseBuffer()
    with pytest.raises(ValueError, match="stamp"):
        buf.add(float("nan"), np.eye(4))
    with pytest.raises(ValueError, match="T_world_body"):
        buf.add(1.0, np.full((4, 4), np.nan))
    with pytest.raises(ValueError, match="T_world_body"):
        buf.add(1.0, np.eye(3))
    with pytest.raises(ValueError, match="stamp"):
        buf.lookup("now")
    with pytest.raises(ValueError, match="max_age_s"):
        PoseBuffer(max_age_s=-1.0)
    assert len(buf) == 0
