"""depth_nodes.codec.pointcloud: PointCloud2 <-> numpy for arbitrary layouts, validation, fuzzing."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from helpers_codec import bag_cloud, ns_cloud, value_error_or_result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from depth_nodes.codec import (
    PointFieldSpec,
    cloud_to_structured,
    cloud_to_xyz,
    structured_to_cloud_fields,
    xyz_to_cloud_fields,
)
from depth_nodes.codec.pointcloud import DATATYPE_TO_NUMPY

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def random_values(rng, dtype: np.dtype, shape) -> np.ndarray:
    base = dtype.base
    full = shape + dtype.shape
    if base.kind == "f":
        return rng.normal(0, 50, full).astype(base)
    info = np.iinfo(base)
    return rng.integers(info.min, info.max, full, dtype=base, endpoint=True)


def fill(rng, dtype: np.dtype, shape) -> np.ndarray:
    arr = np.zeros(shape, dtype=dtype)
    for name in dtype.names:
        arr[name] = random_values(rng, dtype.fields[name][0], shape)
    return arr


def layout_cloud(arr: np.ndarray, *, bigendian: bool = False, row_pad: int = 0, extra: int = 0) -> SimpleNamespace:
    """Hand-built PointCloud2 bytes for a structured array, with row padding and chosen byte order."""
    organised = arr.ndim == 2
    h, w = arr.shape if organised else (1, arr.shape[0])
    specs = structured_to_cloud_fields(arr)["fields"]
    target = arr.dtype.newbyteorder(">" if bigendian else "<")
    rows = np.ascontiguousarray(arr.reshape(h, w).astype(target)).view(np.uint8).reshape(h, -1)
    padded = np.full((h, rows.shape[1] + row_pad), 0xEE, dtype=np.uint8)
    padded[:, : rows.shape[1]] = rows
    return SimpleNamespace(height=h, width=w, fields=[SimpleNamespace(**s._asdict()) for s in specs],
                           is_bigendian=bigendian, point_step=arr.dtype.itemsize, row_step=padded.shape[1],
                           data=padded.tobytes() + b"\x01" * extra, is_dense=True)


def assert_structured_equal(a: np.ndarray, b: np.ndarray) -> None:
    assert a.dtype.names == b.dtype.names and a.shape == b.shape
    for name in a.dtype.names:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


ALL_TYPES_DTYPE = np.dtype({
    "names": ["x", "y", "z", "i8", "u8", "i16", "u16", "i32", "u32", "f64", "vec"],
    "formats": ["f4", "f4", "f4", "i1", "u1", "i2", "u2", "i4", "u4", "f8", ("f4", (3,))],
    "offsets": [0, 4, 8, 13, 15, 16, 20, 24, 28, 40, 48],
    "itemsize": 64,
})


@pytest.mark.parametrize("datatype", sorted(DATATYPE_TO_NUMPY))
@pytest.mark.parametrize("count", [1, 3])
def test_every_datatype_and_count_round_trips(rng, datatype, count):
    fmt = DATATYPE_TO_NUMPY[datatype]
    dtype = np.dtype([("x", "f4"), ("y", "f4"), ("z", "f4"), ("v", fmt if count == 1 else (fmt, (count,)))])
    arr = fill(rng, dtype, (11,))
    fields = structured_to_cloud_fields(arr)
    assert fields["fields"][3] == PointFieldSpec("v", 12, datatype, count)
    for msg in (SimpleNamespace(**fields), ns_cloud(fields), bag_cloud(fields)):
        assert_structured_equal(cloud_to_structured(msg), arr)
        np.testing.assert_array_equal(cloud_to_xyz(msg), np.stack([arr["x"], arr["y"], arr["z"]], axis=1))


@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("row_pad", [0, 5])
@pytest.mark.parametrize("shape", [(7,), (3, 4)])
def test_padding_offsets_byte_orders_and_organised(rng, bigendian, row_pad, shape):
    arr = fill(rng, ALL_TYPES_DTYPE, shape)
    msg = layout_cloud(arr, bigendian=bigendian, row_pad=row_pad, extra=3)
    for m in (msg, bag_cloud(vars(msg))):
        out = cloud_to_structured(m, keep_organized=True)
        assert out.dtype.isnative and out.dtype.itemsize == 64
        assert_structured_equal(out, arr.reshape(out.shape))
        assert_structured_equal(cloud_to_structured(m), arr.reshape(-1))


def test_native_unpadded_cloud_is_a_zero_copy_view(rng):
    arr = fill(rng, ALL_TYPES_DTYPE, (20,))
    fields = structured_to_cloud_fields(arr)
    assert np.shares_memory(fields["data"], arr)
    assert fields["point_step"] == 64 and fields["row_step"] == 64 * 20 and fields["height"] == 1
    assert np.shares_memory(cloud_to_structured(SimpleNamespace(**fields)), arr)


def test_non_dense_cloud_and_skip_nans(rng):
    pts = rng.normal(size=(5, 6, 3)).astype(np.float32)
    pts[1, 2, 0] = np.nan
    pts[4, 5, 2] = np.inf
    fields = xyz_to_cloud_fields(pts, {"intensity": np.arange(30, dtype=np.float32).reshape(5, 6)})
    assert not fields["is_dense"] and (fields["height"], fields["width"]) == (5, 6)
    msg = ns_cloud(fields)
    all_pts = cloud_to_xyz(msg, skip_nans=False)
    np.testing.assert_array_equal(all_pts, pts.reshape(-1, 3))
    kept = cloud_to_xyz(msg)
    assert kept.shape == (28, 3) and np.isfinite(kept).all()
    org = cloud_to_structured(msg, keep_organized=True)
    assert org.shape == (5, 6) and org["intensity"][2, 3] == 15
    dense = xyz_to_cloud_fields(pts.reshape(-1, 3)[np.isfinite(pts.reshape(-1, 3)).all(1)])
    assert dense["is_dense"] and dense["point_step"] == 12
    assert xyz_to_cloud_fields(pts, is_dense=True)["is_dense"]


def test_xyz_writer_casts_coordinates_and_keeps_extra_types(rng):
    pts = rng.normal(size=(9, 3))
    rgb = rng.integers(0, 2**24, 9).astype(np.uint32)
    fields = xyz_to_cloud_fields(pts, {"rgb": rgb, "normal": rng.normal(size=(9, 3)).astype(np.float32)})
    assert [f.name for f in fields["fields"]] == ["x", "y", "z", "rgb", "normal"]
    assert fields["fields"][4].count == 3 and fields["fields"][3].datatype == 6
    out = cloud_to_structured(bag_cloud(fields))
    np.testing.assert_array_equal(out["rgb"], rgb)
    np.testing.assert_allclose(cloud_to_xyz(SimpleNamespace(**fields)), pts.astype(np.float32))


def test_empty_clouds():
    empty = SimpleNamespace(height=0, width=0, fields=[], is_bigendian=False, point_step=0, row_step=0, data=b"")
    assert cloud_to_structured(empty).shape == (0,)
    fields = xyz_to_cloud_fields(np.zeros((0, 3), np.float32))
    assert fields["width"] == 0 and fields["is_dense"]
    assert cloud_to_xyz(ns_cloud(fields)).shape == (0, 3)
    assert cloud_to_xyz(bag_cloud(fields)).shape == (0, 3)


def good_cloud_fields() -> dict:
    return structured_to_cloud_fields(np.zeros(4, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("t", "u2")]))


@pytest.mark.parametrize("change, match", [
    ({"height": 2}, r"data has 56 bytes, need row_step\*height=56\*2=112"),
    ({"row_step": 13}, r"row_step=13 < width\*point_step=4\*14"),
    ({"point_step": 13}, "field 't' .* ends at byte 14 > point_step=13"),
    ({"width": 2**32}, "width=4294967296 outside"),
    ({"fields": None}, "fields must be a list"),
    ({"fields": []}, "has 4 points but no fields"),
    ({"data": b"\0" * 55}, "data has 55 bytes"),
    ({"data": 3.5}, "bytes-like"),
    ({"is_bigendian": "yes"}, "is_bigendian"),
])
def test_reader_rejects_bad_headers(change, match):
    msg = ns_cloud(good_cloud_fields())
    vars(msg).update(change)
    with pytest.raises(ValueError, match=match):
        cloud_to_structured(msg)


@pytest.mark.parametrize("specs, match", [
    ([("x", 0, 7, 1), ("y", 2, 7, 1)], "'y' at offset 2 overlaps field 'x' ending at byte 4"),
    ([("x", 0, 7, 1), ("x", 4, 7, 1)], "not unique"),
    ([("x", 0, 9, 1)], r"datatype=9 outside 1..8"),
    ([("x", 0, 0, 1)], r"datatype=0 outside"),
    ([("x", 0, 7, 0)], r"count=0 outside"),
    ([("", 0, 7, 1)], "name is empty"),
    ([("x", 10, 8, 1)], "ends at byte 18 > point_step=14"),
    ([("x", 0, 7, 4)], "ends at byte 16"),
])
def test_reader_rejects_bad_field_layouts(specs, match):
    fields = {**good_cloud_fields(), "fields": [PointFieldSpec(*s) for s in specs]}
    with pytest.raises(ValueError, match=match):
        cloud_to_structured(ns_cloud(fields))


def test_point_cap_and_xyz_requirements():
    msg = ns_cloud(good_cloud_fields())
    with pytest.raises(ValueError, match="max_points=3"):
        cloud_to_structured(msg, max_points=3)
    no_z = structured_to_cloud_fields(np.zeros(2, dtype=[("x", "f4"), ("y", "f4")]))
    with pytest.raises(ValueError, match=r"lacks field\(s\) \['z'\]"):
        cloud_to_xyz(ns_cloud(no_z))
    vec_x = structured_to_cloud_fields(np.zeros(2, dtype=[("x", "f4", (2,)), ("y", "f4"), ("z", "f4")]))
    with pytest.raises(ValueError, match="'x' must have count 1"):
        cloud_to_xyz(ns_cloud(vec_x))


@pytest.mark.parametrize("array, match", [
    (np.zeros(3, np.float32), "structured dtype"),
    (np.zeros(3, dtype=[("x", "i8")]), "no PointField datatype"),
    (np.zeros(3, dtype=[("x", "f2")]), "no PointField datatype"),
    (np.zeros(3, dtype=[("x", "f4", (2, 2))]), "must be 1-D"),
    (np.zeros(3, dtype=[("p", [("a", "f4")])]), "no PointField datatype"),
    (np.zeros((2, 2, 2), dtype=[("x", "f4")]), r"\(N,\) or \(H, W\)"),
])
def test_writer_rejects_unsupported_arrays(array, match):
    with pytest.raises(ValueError, match=match):
        structured_to_cloud_fields(array)


@pytest.mark.parametrize("points, extra, match", [
    (np.zeros((4, 2)), None, r"\(N, 3\)"),
    (np.zeros((4, 3), dtype=object), None, "real numbers"),
    (np.zeros((4, 3)), {"x": np.zeros(4)}, "other than x, y, z"),
    (np.zeros((4, 3)), {"i": np.zeros(5)}, "does not match points"),
    (np.zeros((4, 3)), {"i": np.zeros(4, dtype=np.int64)}, "no PointField datatype"),
    (np.zeros((5, 3)), None, "max_points=4"),
])
def test_xyz_writer_rejects_bad_input(points, extra, match):
    with pytest.raises(ValueError, match=match):
        xyz_to_cloud_fields(points, extra, max_points=4)


@st.composite
def structured_layouts(draw):
    """A random valid field layout (any datatypes/counts, gaps, tail padding) and its values."""
    n_fields = draw(st.integers(1, 5))
    offset, names, formats, offsets = 0, [], [], []
    for i in range(n_fields):
        offset += draw(st.integers(0, 3))
        fmt = DATATYPE_TO_NUMPY[draw(st.integers(1, 8))]
        count = draw(st.integers(1, 3))
        names.append(draw(st.sampled_from(["x", "y", "z", "intensity", "ring", "t"])) + str(i))
        formats.append(fmt if count == 1 else (fmt, (count,)))
        offsets.append(offset)
        offset += int(fmt[1]) * count
    dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets,
                      "itemsize": offset + draw(st.integers(0, 4))})
    shape = draw(st.sampled_from([(0,), (1,), (5,), (2, 3), (3, 1)]))
    raw = draw(st.binary(min_size=dtype.itemsize * int(np.prod(shape)),
                         max_size=dtype.itemsize * int(np.prod(shape))))
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def assert_bytes_equal(a: np.ndarray, b: np.ndarray) -> None:
    """Field-by-field equality on the raw bytes (NaN payloads included)."""
    for name in a.dtype.names:
        fa, fb = np.ascontiguousarray(a[name]), np.ascontiguousarray(b[name])
        assert fa.tobytes() == fb.astype(fa.dtype).tobytes(), name


@FUZZ
@given(structured_layouts(), st.booleans(), st.integers(0, 3))
def test_fuzz_random_layouts_round_trip(arr, bigendian, row_pad):
    if arr.size == 0:
        row_pad = 0
    msg = layout_cloud(arr, bigendian=bigendian, row_pad=row_pad)
    out = cloud_to_structured(msg, keep_organized=True)
    assert_bytes_equal(out, arr.reshape(out.shape))
    assert_bytes_equal(cloud_to_structured(bag_cloud(vars(msg)), keep_organized=True), out)
    back = cloud_to_structured(SimpleNamespace(**structured_to_cloud_fields(out)), keep_organized=True)
    assert_bytes_equal(back, out)


@st.composite
def corrupted_clouds(draw):
    arr = draw(structured_layouts())
    msg = layout_cloud(arr, row_pad=draw(st.integers(0, 2)) if arr.size else 0)
    target = draw(st.sampled_from(["height", "width", "point_step", "row_step", "data", "fields", "field",
                                   "is_bigendian"]))
    ints = st.integers(-3, 2**33)
    if target in ("height", "width", "point_step", "row_step"):
        setattr(msg, target, draw(st.one_of(ints, st.integers(0, 80), st.none(), st.floats(allow_nan=True))))
    elif target == "data":
        msg.data = draw(st.one_of(st.binary(max_size=300), st.lists(st.integers(-2, 300), max_size=20), st.none()))
    elif target == "fields":
        msg.fields = draw(st.one_of(st.none(), st.just([]), st.just(msg.fields[:-1]), st.just(msg.fields * 2)))
    elif target == "field":
        f = draw(st.sampled_from(msg.fields))
        attr = draw(st.sampled_from(["name", "offset", "datatype", "count"]))
        setattr(f, attr, draw(st.one_of(st.integers(-2, 2**32 + 2), st.integers(0, 9), st.text(max_size=3),
                                        st.none())))
    else:
        msg.is_bigendian = draw(st.one_of(st.integers(-1, 3), st.text(max_size=2)))
    return msg


@FUZZ
@given(corrupted_clouds())
def test_fuzz_corrupted_clouds_decode_or_raise_value_error(msg):
    out = value_error_or_result(cloud_to_structured, msg, keep_organized=True, max_points=100_000)
    if out is not None:
        assert out.shape == (msg.height, msg.width)
        back = value_error_or_result(structured_to_cloud_fields, out)
        if back is not None:
            assert_bytes_equal(cloud_to_structured(SimpleNamespace(**back), keep_organized=True), out)
    value_error_or_result(cloud_to_xyz, msg, max_points=100_000)
