"""depth_nodes.codec.image: Image <-> numpy round trips, layouts, validation, fuzzing."""
from __future__ import annotations

import sys
from types import SimpleNamespace

import numpy as np
import pytest
from helpers_codec import bag_image, ns_image, value_error_or_result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from depth_nodes.codec import array_to_image_fields, depth_to_metres, image_to_array, image_to_rgb, pixel_format

ENCODINGS = ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "rgb16", "bgra16", "bayer_rggb8",
             "bayer_gbrg16", "8UC1", "8UC3", "8SC1", "16UC1", "16SC1", "32SC1", "32FC1", "32FC3", "64FC1", "16UC4"]
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def random_image(rng, encoding: str, height: int = 5, width: int = 7) -> np.ndarray:
    fmt = pixel_format(encoding)
    shape = (height, width) if fmt.channels == 1 else (height, width, fmt.channels)
    dtype = fmt.dtype()
    if dtype.kind == "f":
        return rng.normal(0, 100, shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


def layout_msg(array: np.ndarray, encoding: str, *, pad: int = 0, bigendian: bool = False, extra: int = 0):
    """Hand-built message bytes with ``pad`` bytes of row padding, in the requested byte order."""
    h, w = array.shape[:2]
    fmt = pixel_format(encoding)
    rows = np.ascontiguousarray(array, dtype=fmt.dtype(">" if bigendian else "<")).reshape(h, -1).view(np.uint8)
    padded = np.full((h, rows.shape[1] + pad), 0xAB, dtype=np.uint8)
    padded[:, : rows.shape[1]] = rows
    data = padded.tobytes() + b"\xcd" * extra
    return SimpleNamespace(height=h, width=w, encoding=encoding, is_bigendian=int(bigendian),
                           step=rows.shape[1] + pad, data=data)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_round_trip_every_encoding_namespace_and_bag(rng, encoding):
    img = random_image(rng, encoding)
    fields = array_to_image_fields(img, encoding)
    assert fields["step"] == img.shape[1] * pixel_format(encoding).bytes_per_pixel
    assert fields["is_bigendian"] == int(sys.byteorder == "big")
    for msg in (SimpleNamespace(**fields), ns_image(fields), bag_image(fields)):
        out = image_to_array(msg)
        assert out.dtype == img.dtype and out.shape == img.shape
        np.testing.assert_array_equal(out, img)


def test_encode_and_decode_are_zero_copy_for_native_contiguous_data(rng):
    img = random_image(rng, "32FC1", 48, 64)
    fields = array_to_image_fields(img, "32FC1")
    assert np.shares_memory(fields["data"], img)
    out = image_to_array(SimpleNamespace(**fields))
    assert np.shares_memory(out, img)


@pytest.mark.parametrize("encoding", ["rgb8", "mono16", "16UC1", "32FC1", "64FC1", "16SC1", "bgra8"])
@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("pad", [0, 3, 8])
def test_padded_rows_and_both_byte_orders(rng, encoding, bigendian, pad):
    img = random_image(rng, encoding, 6, 9)
    msg = layout_msg(img, encoding, pad=pad, bigendian=bigendian, extra=5)
    out = image_to_array(msg)
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, img)
    np.testing.assert_array_equal(image_to_array(bag_image(vars(msg))), img)


def test_channel_last_one_accepted_for_mono():
    img = np.arange(12, dtype=np.uint16).reshape(3, 4, 1)
    fields = array_to_image_fields(img, "16UC1")
    np.testing.assert_array_equal(image_to_array(SimpleNamespace(**fields)), img[..., 0])


def test_non_contiguous_input_is_copied_correctly(rng):
    img = random_image(rng, "rgb8", 10, 12)[::2, ::3]
    fields = array_to_image_fields(img, "rgb8")
    np.testing.assert_array_equal(image_to_array(SimpleNamespace(**fields)), img)


def test_image_to_rgb_orders_channels():
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    bgr = rgb[..., ::-1]
    bgra = np.concatenate([bgr, np.full((2, 3, 1), 255, np.uint8)], axis=2)
    rgba = np.concatenate([rgb, np.full((2, 3, 1), 255, np.uint8)], axis=2)
    for arr, enc in ((rgb, "rgb8"), (bgr, "bgr8"), (bgra, "bgra8"), (rgba, "rgba8")):
        np.testing.assert_array_equal(image_to_rgb(SimpleNamespace(**array_to_image_fields(arr, enc))), rgb)
    mono = rgb[..., 0]
    out = image_to_rgb(SimpleNamespace(**array_to_image_fields(mono, "mono8")))
    assert out.shape == (2, 3, 3) and np.all(out == mono[..., None])
    with pytest.raises(ValueError, match="8-bit"):
        image_to_rgb(SimpleNamespace(**array_to_image_fields(np.zeros((2, 2), np.float32), "32FC1")))


def test_depth_16uc1_millimetres_to_metres_with_nan_for_zero():
    mm = np.array([[0, 1000], [1500, 65535]], dtype=np.uint16)
    for src in (SimpleNamespace(**array_to_image_fields(mm, "16UC1")), mm):
        out = depth_to_metres(src)
        assert out.dtype == np.float32 and np.isnan(out[0, 0])
        np.testing.assert_allclose(out.ravel()[1:], [1.0, 1.5, 65.535], rtol=1e-6)
    np.testing.assert_allclose(depth_to_metres(SimpleNamespace(**array_to_image_fields(mm, "mono16")))[0, 1], 1.0)


def test_depth_32fc1_invalid_values_become_nan_and_message_untouched():
    m = np.array([[np.nan, np.inf, -np.inf], [-1.0, 0.0, 2.5]], dtype=np.float32)
    msg = SimpleNamespace(**array_to_image_fields(m, "32FC1"))
    out = depth_to_metres(msg)
    assert np.isnan(out.ravel()[:5]).all() and out[1, 2] == np.float32(2.5)
    assert not np.shares_memory(out, m) and m[1, 0] == -1.0
    be = layout_msg(m, "32FC1", bigendian=True)
    np.testing.assert_array_equal(depth_to_metres(be), out)


def test_depth_rejects_other_encodings_and_dtypes():
    with pytest.raises(ValueError, match="depth encoding"):
        depth_to_metres(SimpleNamespace(**array_to_image_fields(np.zeros((2, 2, 3), np.uint8), "rgb8")))
    with pytest.raises(ValueError, match="float64"):
        depth_to_metres(np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        depth_to_metres(np.zeros((2, 2, 2), np.float32))


@pytest.mark.parametrize("change, match", [
    ({"encoding": "yuv422_yuy2"}, "unsupported image encoding 'yuv422_yuy2'"),
    ({"encoding": "24FC1"}, "unsupported image encoding"),
    ({"encoding": 5}, "encoding must be a str"),
    ({"width": 0}, "width=0 outside"),
    ({"height": 9000}, "height=9000 outside"),
    ({"height": -1}, r"height=-1 outside"),
    ({"width": 2.0}, "width must be an int"),
    ({"step": 11}, r"step=11 < width\*bytes_per_pixel"),
    ({"data": b"\0" * 47}, "has 47 bytes, need step\\*height=12\\*4=48"),
    ({"data": "abc"}, "bytes-like, got str"),
    ({"data": None}, "bytes-like, got NoneType"),
    ({"data": [1, 2, 300]}, "0..255"),
    ({"is_bigendian": 2}, "is_bigendian"),
])
def test_reader_rejects_bad_messages_naming_the_field(change, match):
    fields = array_to_image_fields(np.zeros((4, 4, 3), np.uint8), "rgb8")
    with pytest.raises(ValueError, match=match):
        image_to_array(SimpleNamespace(**{**fields, **change}))


def test_reader_rejects_missing_fields_and_respects_max_side():
    fields = array_to_image_fields(np.zeros((4, 5), np.uint8), "mono8")
    del fields["step"]
    with pytest.raises(ValueError, match="no field 'step'"):
        image_to_array(SimpleNamespace(**fields))
    fields = array_to_image_fields(np.zeros((4, 5), np.uint8), "mono8")
    with pytest.raises(ValueError, match="width=5 outside 1..4"):
        image_to_array(SimpleNamespace(**fields), max_side=4)


@pytest.mark.parametrize("array, encoding, match", [
    (np.zeros((4, 4), np.float64), "32FC1", "dtype float64 does not match"),
    (np.zeros((4, 4, 3), np.uint16), "rgb8", "dtype uint16 does not match"),
    (np.zeros((4, 4), np.uint8), "rgb8", r"shape \(H, W, 3\)"),
    (np.zeros((4, 4, 2), np.float32), "32FC1", r"shape \(H, W\)"),
    (np.zeros((0, 4), np.uint8), "mono8", "height=0"),
    (np.zeros((4, 4), np.uint8), "nv12", "unsupported image encoding"),
])
def test_writer_rejects_mismatched_arrays(array, encoding, match):
    with pytest.raises(ValueError, match=match):
        array_to_image_fields(array, encoding)


def test_writer_converts_non_native_byte_order():
    img = np.arange(6, dtype=">u2").reshape(2, 3)
    fields = array_to_image_fields(img, "16UC1")
    np.testing.assert_array_equal(image_to_array(SimpleNamespace(**fields)), img)


@st.composite
def image_messages(draw):
    """Valid messages, then maybe corrupted in one field."""
    encoding = draw(st.sampled_from(ENCODINGS))
    fmt = pixel_format(encoding)
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    pad = draw(st.integers(0, 5))
    big = draw(st.booleans())
    raw = draw(st.binary(min_size=h * w * fmt.bytes_per_pixel, max_size=h * w * fmt.bytes_per_pixel))
    img = np.frombuffer(raw, dtype=fmt.dtype()).reshape((h, w) if fmt.channels == 1 else (h, w, fmt.channels))
    msg = layout_msg(img, encoding, pad=pad, bigendian=big)
    corrupt = draw(st.sampled_from(["none", "height", "width", "step", "encoding", "data", "is_bigendian"]))
    if corrupt == "height":
        msg.height = draw(st.integers(-2, 10_000))
    elif corrupt == "width":
        msg.width = draw(st.one_of(st.integers(-2, 2**33), st.floats(), st.none()))
    elif corrupt == "step":
        msg.step = draw(st.integers(-5, 2**32 + 5))
    elif corrupt == "encoding":
        bad = ["", "yuv422", "32FC9", "8FC1"]
        msg.encoding = draw(st.one_of(st.sampled_from(ENCODINGS + bad), st.text(max_size=6)))
    elif corrupt == "data":
        msg.data = draw(st.one_of(st.binary(max_size=400), st.lists(st.integers(-3, 300), max_size=30), st.none()))
    elif corrupt == "is_bigendian":
        msg.is_bigendian = draw(st.one_of(st.integers(-1, 3), st.booleans(), st.text(max_size=2)))
    return msg, img, corrupt


@FUZZ
@given(image_messages())
def test_fuzz_readers_round_trip_or_raise_value_error(case):
    msg, img, corrupt = case
    out = value_error_or_result(image_to_array, msg)
    if corrupt == "none":
        np.testing.assert_array_equal(out, img)
        np.testing.assert_array_equal(image_to_array(bag_image(vars(msg))), img)
    value_error_or_result(depth_to_metres, msg)
    value_error_or_result(image_to_rgb, msg)
    if out is not None:
        back = image_to_array(SimpleNamespace(**array_to_image_fields(out, msg.encoding)))
        np.testing.assert_array_equal(back, out)


@FUZZ
@given(st.integers(0, 9), st.integers(0, 9), st.integers(0, 4),
       st.sampled_from(["u1", "u2", "i2", "f4", "f8", "i8", "b1"]), st.sampled_from(ENCODINGS))
def test_fuzz_writer_accepts_matching_or_raises_value_error(h, w, c, dtype, encoding):
    shape = (h, w) if c == 0 else (h, w, c)
    arr = np.ones(shape, dtype=dtype)
    fields = value_error_or_result(array_to_image_fields, arr, encoding)
    if fields is not None:
        np.testing.assert_array_equal(image_to_array(SimpleNamespace(**fields)).reshape(arr.shape), arr)
