"""Property tests of the core entry points (issue #9): arbitrary arrays and parameters give a correct
result or a ValueError, never another exception (hypothesis, seeded by the derandomize profile)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from depth_nodes.camera import MAX_IMAGE_SIDE, PinholeCamera
from depth_nodes.codec import cloud_to_structured, cloud_to_xyz, depth_to_metres, image_to_array, image_to_rgb
from depth_nodes.depth.interface import DepthInput
from depth_nodes.mapping.config import TsdfConfig
from depth_nodes.mapping.pose_buffer import PoseBuffer
from depth_nodes.mapping.tsdf import TsdfMap
from depth_nodes.planning.planner import PlannerConfig, PrimitivePlanner
from depth_nodes.planning.primitives import PrimitiveLibraryConfig
from depth_nodes.planning.state import VehicleState

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
CAM = PinholeCamera.from_fov(8, 6, 90.0)

numbers = st.one_of(st.integers(-(2**40), 2**40), st.floats(allow_nan=True, allow_infinity=True), st.none(),
                    st.text(max_size=3), st.booleans())
floats = st.floats(allow_nan=True, allow_infinity=True, width=64)


def float_arrays(max_dims: int = 3, max_side: int = 5, dtype=np.float64):
    return hnp.arrays(dtype, hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=max_side),
                      elements=st.floats(allow_nan=True, allow_infinity=True, width=np.dtype(dtype).itemsize * 8))


def any_arrays():
    return st.one_of(float_arrays(), float_arrays(dtype=np.float32),
                     hnp.arrays(st.sampled_from([np.uint8, np.uint16, np.int32, np.bool_]),
                                hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6)))


def _value_error_or(fn, check=None):
    """Run ``fn``: a ValueError is a correct refusal; a result must pass ``check``."""
    try:
        out = fn()
    except ValueError:
        return None
    if check is not None:
        check(out)
    return out


@SETTINGS
@given(w=numbers, h=numbers, K=st.one_of(any_arrays(), numbers), P=st.one_of(st.none(), any_arrays()))
def test_pinhole_camera(w, h, K, P):
    def check(cam):
        assert 0 < cam.width <= MAX_IMAGE_SIDE and 0 < cam.height <= MAX_IMAGE_SIDE
        assert cam.K.shape == (3, 3) and np.isfinite(cam.K).all() and cam.K[0, 0] > 0 and cam.K[1, 1] > 0
        assert cam.P.shape == (3, 4) and np.isfinite(cam.P).all()
    _value_error_or(lambda: PinholeCamera(w, h, K, P=P), check)


ENCODINGS = ["rgb8", "bgr8", "mono8", "mono16", "16UC1", "32FC1", "8UC3", "64FC4", "bayer_rggb8", "yuv422", "",
             "32FC9"]


@SETTINGS
@given(height=st.integers(-2, 2**33), width=st.integers(-2, 2**33), step=st.integers(-2, 2**33),
       small=st.booleans(), encoding=st.sampled_from(ENCODINGS), big=st.integers(0, 2),
       data=st.binary(max_size=600))
def test_image_decoders(height, width, step, small, encoding, big, data):
    if small:  # mostly plausible headers, so decoding succeeds sometimes
        height, width, step = height % 12, width % 12, step % 200
    msg = SimpleNamespace(height=height, width=width, step=step, encoding=encoding, is_bigendian=big, data=data)

    def shape_ok(a):
        assert a.shape[:2] == (height, width)
    _value_error_or(lambda: image_to_array(msg), shape_ok)
    _value_error_or(lambda: image_to_rgb(msg), lambda a: (shape_ok(a), a.dtype == np.uint8 and a.shape[2] == 3))

    def depth_ok(d):
        shape_ok(d)
        assert d.dtype == np.float32 and not (d <= 0).any() and not np.isinf(d).any()
    _value_error_or(lambda: depth_to_metres(msg), depth_ok)


field_st = st.builds(lambda name, offset, datatype, count: SimpleNamespace(name=name, offset=offset,
                                                                           datatype=datatype, count=count),
                     st.sampled_from(["x", "y", "z", "intensity", "x", ""]), st.integers(-1, 40),
                     st.integers(-1, 10), st.integers(-1, 3))


@SETTINGS
@given(fields=st.lists(field_st, max_size=5), height=st.integers(-1, 2**33), width=st.integers(-1, 2**33),
       point_step=st.integers(-1, 64), row_step=st.integers(-1, 2**33), small=st.booleans(),
       big=st.booleans(), dense=st.booleans(), data=st.binary(max_size=800))
def test_cloud_decoders(fields, height, width, point_step, row_step, small, big, dense, data):
    if small:
        height, width, row_step = height % 3, width % 20, row_step % 600
    msg = SimpleNamespace(fields=fields, height=height, width=width, point_step=point_step, row_step=row_step,
                          is_bigendian=big, is_dense=dense, data=data)
    _value_error_or(lambda: cloud_to_structured(msg), lambda a: a.shape == (height * width,))

    def xyz_ok(p):
        assert p.ndim == 2 and p.shape[1] == 3 and p.dtype == np.float32 and np.isfinite(p).all()
    _value_error_or(lambda: cloud_to_xyz(msg), xyz_ok)


@SETTINGS
@given(rgb=any_arrays(), radar=st.one_of(st.none(), any_arrays(), float_arrays(2, 7, np.float32)))
def test_depth_input(rgb, radar):
    def check(inp):
        assert inp.rgb.shape == (CAM.height, CAM.width, 3) and inp.rgb.dtype == np.uint8
        assert inp.radar is None or (inp.radar.ndim == 2 and inp.radar.shape[1] == 5)
    _value_error_or(lambda: DepthInput(rgb, CAM, radar), check)


TSDF = TsdfMap(TsdfConfig(voxel_size=0.1, sdf_trunc=0.3, depth_max=5.0, block_budget=2000))


@settings(SETTINGS, max_examples=40)
@given(depth=st.one_of(any_arrays(), hnp.arrays(np.float32, (6, 8), elements=st.floats(-1, 8, width=32))),
       T=st.one_of(float_arrays(2, 4), st.just(np.eye(4))))
def test_tsdf_integrate(depth, T):
    before = TSDF.stats()["frames_integrated"]

    def check(r):
        assert r.accepted == (TSDF.stats()["frames_integrated"] == before + 1)
        assert r.accepted or r.reason
    _value_error_or(lambda: TSDF.integrate(depth, CAM, T), check)


LIB = PrimitiveLibraryConfig(n_yaw=5, n_climb=1, speeds=(1.0,), horizon_s=1.0, dt=0.1, v_max=2.0, a_max=4.0)
PLANNER = PrimitivePlanner(PlannerConfig(library=LIB, require_depth=False))


@SETTINGS
@given(pos=st.one_of(any_arrays(), float_arrays(1, 3)), vel=st.one_of(st.just(np.zeros(3)), any_arrays()),
       yaw=floats, now=floats, goal=st.one_of(st.none(), float_arrays(1, 3), any_arrays()))
def test_planner_state_validation(pos, vel, yaw, now, goal):
    state = _value_error_or(lambda: VehicleState(pos, vel, np.zeros(3), yaw, 0.0),
                            lambda s: np.isfinite(s.pos).all() and s.pos.shape == (3,))
    if state is None:
        return

    def check(r):
        assert np.isfinite(r.trajectory.pos).all() and r.status.value

    _value_error_or(lambda: PLANNER.plan(state, now, goal), check)


@SETTINGS
@given(max_age=numbers, extrap=numbers, max_samples=numbers,
       samples=st.lists(st.tuples(st.one_of(floats, st.integers(-5, 5)), st.one_of(float_arrays(2, 4),
                                                                                  st.just(np.eye(4)))), max_size=6),
       query=st.one_of(floats, numbers))
def test_pose_buffer(max_age, extrap, max_samples, samples, query):
    buf = _value_error_or(lambda: PoseBuffer(max_age, extrap, max_samples))
    if buf is None:
        return
    for stamp, T in samples:
        _value_error_or(lambda: buf.add(stamp, T), lambda ok: isinstance(ok, bool))
    assert len(buf) <= buf.max_samples

    def rigid(T):
        assert T.shape == (4, 4) and np.allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-6)
    _value_error_or(lambda: buf.lookup(query), rigid)


@pytest.mark.parametrize("value", [float("inf"), float("nan"), None, "7", 1e30])
def test_camera_size_of_any_type_is_a_value_error(value):
    with pytest.raises(ValueError):
        PinholeCamera(value, 6, np.eye(3))


def test_tsdf_frame_touching_no_block_is_rejected_not_raised():
    """Found by test_tsdf_integrate: Open3D samples depth pixels with a stride and raised on a frame whose
    only valid pixel it skipped."""
    m = TsdfMap(TsdfConfig(voxel_size=0.1, sdf_trunc=0.3))
    d = np.zeros((6, 8), np.float32)
    d[0, 1] = 1.0
    r = m.integrate(d, CAM, np.eye(4))
    assert not r.accepted and "no map block touched" in r.reason
    assert m.stats()["frames_integrated"] == 0
