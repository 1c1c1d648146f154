"""sensor_msgs/PointCloud2 <-> numpy structured arrays, without ROS (duck-typed messages).

Any field layout is supported: the eight PointField datatypes, ``count > 1``
(numpy sub-arrays), arbitrary offsets and padding inside a point
(``point_step``) and at the end of a row (``row_step``), either byte order,
organised (``height > 1``) and unorganised clouds. Points are in the frame of
the message header; coordinates are float metres.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from depth_nodes.codec.buffer import NATIVE_ORDER, as_byte_buffer, byteorder_char, get_bool, get_str, get_uint

#: PointField datatype constants -> numpy kind+size (sensor_msgs/PointField).
DATATYPE_TO_NUMPY = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}
NUMPY_TO_DATATYPE = {v: k for k, v in DATATYPE_TO_NUMPY.items()}

#: Default cap on points in one cloud (guards allocations from bad headers).
MAX_POINTS = 1 << 26
#: Largest ``count`` accepted for one field.
MAX_FIELD_COUNT = 1 << 16


class PointFieldSpec(NamedTuple):
    """One sensor_msgs/PointField: byte ``offset`` inside a point, ``datatype`` 1..8, ``count`` elements."""

    name: str
    offset: int
    datatype: int
    count: int = 1

    @property
    def nbytes(self) -> int:
        return int(DATATYPE_TO_NUMPY[self.datatype][1]) * self.count


def _read_field(field, index: int) -> PointFieldSpec:
    owner = f"PointCloud2.fields[{index}]"
    name = get_str(field, "name", owner=owner)
    if not name:
        raise ValueError(f"{owner}.name is empty")
    datatype = get_uint(field, "datatype", lo=1, hi=8, owner=owner)
    return PointFieldSpec(name, get_uint(field, "offset", owner=owner), datatype,
                          get_uint(field, "count", lo=1, hi=MAX_FIELD_COUNT, owner=owner))


def check_field_layout(specs, point_step: int) -> None:
    """ValueError unless names are unique and fields neither overlap nor leave ``point_step``."""
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"PointCloud2 field names are not unique: {names}")
    end_prev, name_prev = 0, None
    for spec in sorted(specs, key=lambda s: s.offset):
        if spec.offset < end_prev:
            raise ValueError(f"PointCloud2 field {spec.name!r} at offset {spec.offset} overlaps "
                             f"field {name_prev!r} ending at byte {end_prev}")
        end_prev, name_prev = spec.offset + spec.nbytes, spec.name
        if end_prev > point_step:
            raise ValueError(f"PointCloud2 field {spec.name!r} (offset {spec.offset}, {spec.nbytes} bytes) "
                             f"ends at byte {end_prev} > point_step={point_step}")


def fields_to_dtype(specs, point_step: int, is_bigendian: bool = False) -> np.dtype:
    """Structured dtype (itemsize ``point_step``) for validated field specs."""
    check_field_layout(specs, point_step)
    order = byteorder_char(is_bigendian)
    formats = []
    for s in specs:
        base = np.dtype(order + DATATYPE_TO_NUMPY[s.datatype])
        formats.append(base if s.count == 1 else np.dtype((base, (s.count,))))
    return np.dtype({"names": [s.name for s in specs], "formats": formats,
                     "offsets": [s.offset for s in specs], "itemsize": point_step})


def cloud_to_structured(msg, *, keep_organized: bool = False, max_points: int = MAX_POINTS) -> np.ndarray:
    """Points of a PointCloud2 as a structured array with one named field per PointField.

    Shape is (height * width,) or, with ``keep_organized``, (height, width).
    Native byte order, no row padding: a zero-copy view of ``msg.data``
    (possibly read-only); otherwise a native-order copy. Trailing bytes after
    ``row_step * height`` are ignored; shorter data is rejected.
    """
    owner = "PointCloud2"
    height = get_uint(msg, "height", owner=owner)
    width = get_uint(msg, "width", owner=owner)
    point_step = get_uint(msg, "point_step", owner=owner)
    row_step = get_uint(msg, "row_step", owner=owner)
    bigendian = get_bool(msg, "is_bigendian", owner=owner)
    n = height * width
    if n > max_points:
        raise ValueError(f"PointCloud2 has height*width={height}*{width}={n} points > max_points={max_points}")
    fields = getattr(msg, "fields", None)
    if not isinstance(fields, (list, tuple)):
        raise ValueError(f"PointCloud2.fields must be a list, got {type(fields).__name__}")
    specs = [_read_field(f, i) for i, f in enumerate(fields)]
    if n and not specs:
        raise ValueError(f"PointCloud2 has {n} points but no fields")
    dtype = fields_to_dtype(specs, point_step, bigendian)
    shape = (height, width)
    if n == 0:
        out = np.zeros(shape, dtype.newbyteorder("="))
        return out if keep_organized else out.reshape(-1)
    if row_step < width * point_step:
        raise ValueError(f"PointCloud2.row_step={row_step} < width*point_step={width}*{point_step}")
    buf = as_byte_buffer(getattr(msg, "data", None), f"{owner}.data")
    if buf.size < row_step * height:
        raise ValueError(f"PointCloud2.data has {buf.size} bytes, need row_step*height={row_step}*{height}"
                         f"={row_step * height}")
    view = np.ndarray(shape, dtype=dtype, buffer=buf, offset=0, strides=(row_step, point_step))
    if byteorder_char(bigendian) != NATIVE_ORDER:
        view = view.astype(dtype.newbyteorder("="))
    return view if keep_organized else view.reshape(-1)


def cloud_to_xyz(msg, skip_nans: bool = True, max_points: int = MAX_POINTS) -> np.ndarray:
    """(N, 3) float32 x, y, z of a PointCloud2 (metres, header frame).

    With ``skip_nans`` points with any non-finite coordinate are dropped;
    otherwise all height*width points are returned in row-major order.
    """
    pts = cloud_to_structured(msg, max_points=max_points)
    names = pts.dtype.names or ()
    missing = [c for c in "xyz" if c not in names]
    if missing:
        raise ValueError(f"PointCloud2 lacks field(s) {missing}; has {list(names)}")
    for c in "xyz":
        if pts.dtype.fields[c][0].shape:
            raise ValueError(f"PointCloud2 field {c!r} must have count 1, got {pts.dtype.fields[c][0].shape[0]}")
    out = np.empty((pts.shape[0], 3), dtype=np.float32)
    keep = np.ones(pts.shape[0], dtype=bool) if skip_nans else None
    for i, c in enumerate("xyz"):
        out[:, i] = pts[c]
        if keep is not None:
            keep &= np.isfinite(out[:, i])  # per column: much faster than isfinite(out).all(axis=1)
    if keep is not None and not keep.all():
        out = out[keep]
    return out


def _spec_for(name: str, field_dtype: np.dtype, offset: int) -> PointFieldSpec:
    count = 1
    if field_dtype.subdtype is not None:
        field_dtype, shape = field_dtype.subdtype
        if len(shape) != 1:
            raise ValueError(f"field {name!r} sub-array shape {shape} must be 1-D")
        count = int(shape[0])
    key = f"{field_dtype.kind}{field_dtype.itemsize}"
    if field_dtype.names is not None or key not in NUMPY_TO_DATATYPE:
        raise ValueError(f"field {name!r} dtype {field_dtype} has no PointField datatype "
                         f"(supported: {sorted(NUMPY_TO_DATATYPE)})")
    if not 1 <= count <= MAX_FIELD_COUNT:
        raise ValueError(f"field {name!r} count {count} outside 1..{MAX_FIELD_COUNT}")
    return PointFieldSpec(name, int(offset), NUMPY_TO_DATATYPE[key], count)


def _dense(arr: np.ndarray) -> bool:
    """True when no floating-point field holds a non-finite value."""
    for name in arr.dtype.names:
        if arr.dtype.fields[name][0].base.kind == "f" and not np.isfinite(arr[name]).all():
            return False
    return True


def structured_to_cloud_fields(array, *, is_dense: bool | None = None, max_points: int = MAX_POINTS) -> dict:
    """PointCloud2 fields for a structured array of shape (N,) or organised (H, W).

    Returns dict(height, width, fields=[PointFieldSpec], is_bigendian,
    point_step, row_step, data, is_dense). The dtype's offsets and itemsize
    (padding) are kept; ``data`` is a 1-D uint8 array in native byte order that
    shares memory with ``array`` when it is C-contiguous and native.
    ``is_dense`` defaults to "every floating-point value is finite".
    """
    arr = np.asarray(array)
    if arr.dtype.names is None:
        raise ValueError(f"cloud array must have a structured dtype, got {arr.dtype}")
    if not arr.dtype.names:
        raise ValueError("cloud array dtype has no fields")
    if arr.ndim not in (1, 2):
        raise ValueError(f"cloud array must be (N,) or (H, W), got shape {arr.shape}")
    if arr.size > max_points:
        raise ValueError(f"cloud array has {arr.size} points > max_points={max_points}")
    specs = [_spec_for(name, *arr.dtype.fields[name][:2]) for name in arr.dtype.names]
    check_field_layout(specs, arr.dtype.itemsize)
    native = fields_to_dtype(specs, arr.dtype.itemsize, NATIVE_ORDER == ">")
    arr = np.ascontiguousarray(arr.astype(native, copy=False))
    height, width = (1, arr.shape[0]) if arr.ndim == 1 else arr.shape
    return {
        "height": int(height),
        "width": int(width),
        "fields": specs,
        "is_bigendian": int(NATIVE_ORDER == ">"),
        "point_step": int(arr.dtype.itemsize),
        "row_step": int(width * arr.dtype.itemsize),
        "data": arr.reshape(-1).view(np.uint8),
        "is_dense": bool(_dense(arr) if is_dense is None else is_dense),
    }


def xyz_dtype(extra_formats: dict | None = None) -> np.dtype:
    """Packed structured dtype: float32 x, y, z followed by ``extra_formats`` (name -> dtype) in order."""
    names, formats = ["x", "y", "z"], [np.float32] * 3
    for name, fmt in (extra_formats or {}).items():
        names.append(name)
        formats.append(fmt)
    return np.dtype({"names": names, "formats": formats})


def xyz_to_cloud_fields(points, extra: dict | None = None, *, is_dense: bool | None = None,
                        max_points: int = MAX_POINTS) -> dict:
    """PointCloud2 fields for (N, 3) or organised (H, W, 3) points plus optional extra fields.

    Coordinates are stored as float32 x, y, z (NaN allowed, then not dense).
    ``extra`` maps a field name to values of shape (N,)/(H, W) or with a
    trailing count axis, e.g. ``{"intensity": np.float32 array, "rgb": uint32}``.
    """
    pts = np.asarray(points)
    if pts.ndim not in (2, 3) or pts.shape[-1] != 3:
        raise ValueError(f"points must be (N, 3) or (H, W, 3), got shape {pts.shape}")
    if pts.dtype.kind not in "fiu":
        raise ValueError(f"points must be real numbers, got dtype {pts.dtype}")
    lead = pts.shape[:-1]
    if int(np.prod(lead)) > max_points:
        raise ValueError(f"points has {int(np.prod(lead))} points > max_points={max_points}")
    extra = dict(extra or {})
    formats = {}
    for name, values in extra.items():
        if not isinstance(name, str) or not name or name in ("x", "y", "z"):
            raise ValueError(f"extra field name {name!r} must be a non-empty str other than x, y, z")
        v = np.asarray(values)
        if v.shape[: len(lead)] != lead or v.ndim > len(lead) + 1:
            raise ValueError(f"extra field {name!r} shape {v.shape} does not match points {lead}")
        formats[name] = v.dtype if v.ndim == len(lead) else np.dtype((v.dtype, (v.shape[-1],)))
        extra[name] = v
    if not extra:
        data = np.ascontiguousarray(pts, dtype=np.float32).view(xyz_dtype())[..., 0]
    else:
        data = np.empty(lead, dtype=xyz_dtype(formats))
        for i, c in enumerate("xyz"):
            data[c] = pts[..., i]
        for name, v in extra.items():
            data[name] = v
    return structured_to_cloud_fields(data, is_dense=is_dense, max_points=max_points)
