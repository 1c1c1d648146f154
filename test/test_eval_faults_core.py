"""Fault definitions and payload corruptions (depth_nodes.eval.faults): no ROS."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from depth_nodes.codec import depth_to_metres, image_to_array, image_to_rgb
from depth_nodes.eval import faults as F


def _depth(rng) -> F.ImagePayload:
    return F.ImagePayload.from_array(rng.uniform(0.5, 10.0, (24, 32)).astype(np.float32), "32FC1")


def _rgb(rng) -> F.ImagePayload:
    return F.ImagePayload.from_array(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8), "rgb8")


def _msg(p: F.ImagePayload) -> SimpleNamespace:
    return SimpleNamespace(height=p.height, width=p.width, step=p.step, encoding=p.encoding,
                           is_bigendian=p.is_bigendian, data=p.data)


@pytest.mark.parametrize("fn", [F.nan_depth, F.inf_depth, F.zero_depth])
def test_depth_fills_decode_to_no_valid_pixel(fn, rng):
    p = fn(_depth(rng))
    assert (p.height, p.width, p.step, p.data.size) == (24, 32, 128, 24 * 128)
    d = depth_to_metres(_msg(p))
    assert d.shape == (24, 32) and np.isnan(d).all()


def test_depth_fill_refuses_non_float_image(rng):
    with pytest.raises(ValueError, match="32FC1"):
        F.nan_depth(_rgb(rng))


def test_wrong_encoding_is_rejected_by_the_consumers(rng):
    d, c = F.wrong_encoding(_depth(rng)), F.wrong_encoding(_rgb(rng))
    assert d.encoding == "rgb8" and c.encoding == "mono16"
    with pytest.raises(ValueError, match="encoding"):
        depth_to_metres(_msg(d))
    with pytest.raises(ValueError, match="mono16"):
        image_to_rgb(_msg(c))


def test_size_mismatch_is_a_valid_half_size_image(rng):
    src = _rgb(rng)
    p = F.size_mismatch(src)
    img = image_to_array(_msg(p))
    assert img.shape == (12, 16, 3)
    full = image_to_array(_msg(src))
    assert np.array_equal(img, full[:12, :16])


def test_truncated_and_oversized_are_rejected_without_allocation(rng):
    src = _depth(rng)
    t = F.truncate_data(src)
    assert t.data.size == src.data.size // 2
    with pytest.raises(ValueError, match="bytes"):
        image_to_array(_msg(t))
    o = F.oversize_header(src)
    assert (o.width, o.height, o.step) == (320, 240, 1280) and o.data.size == src.data.size
    with pytest.raises(ValueError, match="Image.data has"):
        image_to_array(_msg(o))


def test_stamps():
    assert F.shift_stamp_ns(10 * 10**9, -3.0) == 7 * 10**9
    assert F.shift_stamp_ns(10**9, -3.0) == 0
    assert F.shift_stamp_ns(0, 3600.0) == 3600 * 10**9
    with pytest.raises(ValueError):
        F.shift_stamp_ns(0, float("nan"))
    s = F.burst_stamps_ns(10**9, 0.1)
    assert len(s) == F.BURST_FACTOR and s[-1] == 10**9 and s == sorted(set(s))
    assert s[0] > 10**9 - 10**8  # never reaches back to the previous message
    with pytest.raises(ValueError):
        F.burst_stamps_ns(0, 0.0)


def test_fault_table_and_schedule_round_trip():
    names = [f.name for f in F.FAULTS]
    assert len(names) == len(set(names)) >= 15
    assert all(f.expected and f.description for f in F.FAULTS)
    sel = F.select_faults("odom_dropout, depth_nan")
    assert [f.name for f in sel] == ["odom_dropout", "depth_nan"]  # table order
    sched = [sel[0].at(12.5), sel[1].at(20.0)]
    back = F.schedule_from_json(F.schedule_to_json(sched))
    assert [(f.name, f.start_s, f.duration_s) for f in back] == [("odom_dropout", 12.5, 1.0), ("depth_nan", 20.0, 2.0)]
    assert back[1].active(21.0, "ground_truth/depth") and not back[1].active(22.0, "ground_truth/depth")
    assert not back[1].active(21.0, "odom")
    # harness-side faults are not sent to the relay
    assert F.schedule_from_json(F.schedule_to_json([F.FAULTS_BY_NAME["planner_kill_restart"]])) == []


@pytest.mark.parametrize("text, match", [
    ("{", "not JSON"), ("{}", "JSON list"), ('[{"name": "x", "start_s": 0, "duration_s": 1}]', "unknown fault"),
    ('[{"name": "odom_dropout", "start_s": "a", "duration_s": 1}]', "numbers"),
    ('[{"name": "odom_dropout", "start_s": 0, "duration_s": -1}]', "duration_s"),
    ('[{"name": "odom_dropout"}]', "exactly"),
])
def test_bad_schedules_raise_value_error(text, match):
    with pytest.raises(ValueError, match=match):
        F.schedule_from_json(text)


def test_bad_selection_and_fault_fields():
    with pytest.raises(ValueError, match="unknown faults"):
        F.select_faults("nope")
    with pytest.raises(ValueError, match="not relayed"):
        F.Fault("x", "drop", ("cmd_vel",), "d", "e")
    with pytest.raises(ValueError, match="corrupt"):
        F.Fault("x", "corrupt", ("odom",), "d", "e")


def test_lay_out_spaces_faults_by_gap():
    fs = F.lay_out(F.select_faults("camera_dropout_1s,odom_dropout,burst_5x"), 3.0, 2.5, {"burst_5x": 30.0})
    assert [(f.start_s, f.duration_s) for f in fs] == [(3.0, 1.0), (6.5, 1.0), (10.0, 30.0)]
    absolute = F.schedule_from_json(F.schedule_to_json(fs, 100.0))
    assert [f.start_s for f in absolute] == [103.0, 106.5, 110.0]
    with pytest.raises(ValueError):
        F.lay_out(fs, 0.0, -1.0)


def _statuses(pairs):
    return [{"stamp": t, "status": s} for t, s in pairs]


def test_brake_and_resume():
    from depth_nodes.eval.fault_checks import brake_and_resume

    ok = _statuses([(3.0, "ok"), (3.1, "ok"), (3.3, "stale_depth"), (3.4, "stale_depth"), (4.1, "stale_depth"),
                    (4.2, "ok")])
    passed, text = brake_and_resume(ok, 3.2, 4.0, 6.5)
    assert passed and "100 ms" in text and "resumed" in text
    late = _statuses([(3.0, "ok"), (3.5, "stale_depth"), (4.2, "ok")])
    assert not brake_and_resume(late, 3.2, 4.0, 6.5)[0]                 # 300 ms after stale
    leak = _statuses([(3.3, "stale_depth"), (3.5, "ok"), (4.2, "ok")])
    assert not brake_and_resume(leak, 3.2, 4.0, 6.5)[0]                 # planned while stale
    never = _statuses([(3.3, "stale_odom"), (5.0, "stale_odom")])
    assert not brake_and_resume(never, 3.2, 4.0, 6.5)[0]                # did not resume


def test_map_rejections_log_rate_and_recovery():
    from depth_nodes.eval.fault_checks import (LatencySample, brakes_first_after, counter_delta, counters_not_risen,
                                               map_unchanged, max_log_rate_ok, recovery_time_s)

    assert map_unchanged([(9.9, 5), (10.6, 7), (11.0, 7), (11.9, 7), (12.1, 9)], 10.0, 12.0)[0]
    assert not map_unchanged([(10.6, 7), (11.0, 8)], 10.0, 12.0)[0]
    assert not map_unchanged([(10.6, 7)], 10.0, 12.0)[0]                   # too few messages to tell
    before, after = {"/m": {"rejected/depth/image": "3"}}, {"/m": {"rejected/depth/image": "10"}}
    assert counter_delta(before, after, "/m", "rejected/depth/image") == 7
    assert counter_delta({}, after, "/x", "rejected/odom") == 0
    expected = [("/m", "depth/image"), ("/p", "odom")]
    assert counters_not_risen(before, after, expected) == [("/p", "odom")]      # the harness keeps waiting
    both = {"/m": {"rejected/depth/image": "10"}, "/p": {"rejected/odom": "1"}}
    assert counters_not_risen(before, both, expected) == []
    assert counters_not_risen(after, after, expected[:1]) == expected[:1]         # a stale snapshot
    assert max_log_rate_ok({("m", "odom"): [0.0, 1.0, 2.5], ("p", "odom"): [0.0, 0.2]})[0] is False
    assert max_log_rate_ok({("m", "odom"): [0.0, 1.0, 2.5]})[0]
    assert max_log_rate_ok({("m", "odom"): [0.5, 1.0, 2.0, 3.0]})[0]               # one line logged late
    assert not max_log_rate_ok({("m", "odom"): [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]})[0]  # 2 lines per second
    samples = [LatencySample(t / 10, t, 100.0) for t in range(0, 30)]            # baseline 100 ms
    samples += [LatencySample(3.0 + t / 10, 30 + t, 400.0) for t in range(10)]   # burst 3.0 .. 4.0
    after = [300.0] * 5 + [110.0, 400.0, 110.0, 110.0, 110.0] + [110.0] * 10    # one slow frame once settled
    samples += [LatencySample(4.0 + t / 10, 40 + t, ms) for t, ms in enumerate(after)]
    baseline, recovery = recovery_time_s(samples, 3.0, 4.0, 6.0)
    assert baseline == 100.0 and recovery == 5.0
    assert np.isnan(recovery_time_s(samples[:30], 3.0, 4.0, 6.0)[1])                  # nothing after the burst
    assert recovery_time_s(samples[:45], 3.0, 4.0, 6.0)[1] == float("inf")          # never settled
    assert brakes_first_after(_statuses([(2.0, "ok"), (4.3, "stale_odom"), (4.6, "ok")]), 2.2, 4.0, 6.0)[0]
    assert not brakes_first_after(_statuses([(2.0, "ok"), (4.3, "ok")]), 2.2, 4.0, 6.0)[0]
