"""Build ``rosbags`` message objects from plain field dicts (the codec writers' output).

Shared by the simulator's bag recorder and the evaluation layer's BagSink.

``build_message(ts, "sensor_msgs/msg/Image", array_to_image_fields(rgb, "rgb8"),
stamp_ns=t, frame_id="camera_optical_frame")`` returns a message ready for
CDR serialisation. Rules, driven by the type store's field definitions:

* omitted fields get ROS defaults (0, "", False, zero arrays, default sub-messages);
* a nested message may be given as a dict, a NamedTuple (``PointFieldSpec``),
  an already-built message, or (when all its fields are scalars) a plain
  sequence in field order (``position=(x, y, z)``);
* numeric arrays/sequences become numpy arrays of the field's dtype; fixed-size
  arrays are length-checked;
* ``stamp_ns`` / ``frame_id`` fill ``header`` when it is not given explicitly.

Unknown field names and ill-shaped values raise ValueError naming the field.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from rosbags.interfaces import Nodetype
from rosbags.typesys.store import Typestore

_NUMPY = {
    "bool": np.bool_, "byte": np.uint8, "char": np.uint8, "int8": np.int8, "uint8": np.uint8,
    "int16": np.int16, "uint16": np.uint16, "int32": np.int32, "uint32": np.uint32,
    "int64": np.int64, "uint64": np.uint64, "float32": np.float32, "float64": np.float64,
}


def _scalar(base: str, value, where: str):
    if base == "string":
        if not isinstance(value, str):
            raise ValueError(f"{where} must be a str, got {type(value).__name__}")
        return value
    if base == "bool":
        return bool(value)
    if base not in _NUMPY:
        raise ValueError(f"{where}: unsupported base type {base!r}")
    try:
        return float(value) if base.startswith("float") else int(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where} must be a number, got {value!r}: {exc}") from None


def _default(ts: Typestore, desc, where: str):
    kind, detail = desc
    if kind == Nodetype.NAME:
        return build_message(ts, detail, {})
    if kind == Nodetype.BASE:
        return _scalar(detail[0], "" if detail[0] == "string" else 0, where)
    sub, size = detail
    n = size if kind == Nodetype.ARRAY else 0
    if sub[0] == Nodetype.BASE and sub[1][0] in _NUMPY:
        return np.zeros(n, dtype=_NUMPY[sub[1][0]])
    return [_default(ts, sub, where) for _ in range(n)]


def _convert(ts: Typestore, desc, value, where: str):
    kind, detail = desc
    if kind == Nodetype.BASE:
        return _scalar(detail[0], value, where)
    if kind == Nodetype.NAME:
        cls = ts.types[detail]
        if isinstance(value, cls):
            return value
        if hasattr(value, "_asdict"):  # NamedTuple
            return build_message(ts, detail, value._asdict())
        if isinstance(value, Mapping):
            return build_message(ts, detail, value)
        names = [name for name, _ in ts.fielddefs[detail][1]]
        if isinstance(value, (Sequence, np.ndarray)) and not isinstance(value, str) and len(value) == len(names):
            return build_message(ts, detail, dict(zip(names, value)))
        raise ValueError(f"{where} must be a {detail} (dict or message), got {type(value).__name__}")
    sub, size = detail
    if sub[0] == Nodetype.BASE and sub[1][0] in _NUMPY:
        dtype = _NUMPY[sub[1][0]]
        try:
            if isinstance(value, (bytes, bytearray, memoryview)):
                arr = np.frombuffer(value, dtype=np.uint8).astype(dtype, copy=False)
            else:
                arr = np.asarray(value).reshape(-1)
                if arr.dtype != dtype:
                    arr = arr.astype(dtype)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where} must be numeric ({sub[1][0]}): {exc}") from None
        if kind == Nodetype.ARRAY and arr.size != size:
            raise ValueError(f"{where} must have {size} elements, got {arr.size}")
        return np.ascontiguousarray(arr)
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise ValueError(f"{where} must be a sequence, got {type(value).__name__}")
    if kind == Nodetype.ARRAY and len(value) != size:
        raise ValueError(f"{where} must have {size} elements, got {len(value)}")
    return [_convert(ts, sub, v, f"{where}[{i}]") for i, v in enumerate(value)]


def build_message(ts: Typestore, msgtype: str, fields: Mapping | None = None, *,
                  stamp_ns: int | None = None, frame_id: str | None = None):
    """A ``msgtype`` message object of type store ``ts`` from ``fields`` (see module doc)."""
    if msgtype not in ts.fielddefs:
        raise ValueError(f"unknown message type {msgtype!r}")
    fields = dict(fields or {})
    fdefs = dict(ts.fielddefs[msgtype][1])
    unknown = sorted(set(fields) - set(fdefs))
    if unknown:
        raise ValueError(f"{msgtype} has no field(s) {unknown}; fields: {list(fdefs)}")
    if (stamp_ns is not None or frame_id is not None) and "header" not in fields:
        if "header" not in fdefs:
            raise ValueError(f"{msgtype} has no header for stamp_ns/frame_id")
        header: dict = {"frame_id": frame_id or ""}
        if stamp_ns is not None:
            if isinstance(stamp_ns, bool) or not isinstance(stamp_ns, (int, np.integer)) or stamp_ns < 0:
                raise ValueError(f"stamp_ns must be an int >= 0 (nanoseconds), got {stamp_ns!r}")
            header["stamp"] = {"sec": int(stamp_ns) // 1_000_000_000, "nanosec": int(stamp_ns) % 1_000_000_000}
        fields["header"] = header
    kwargs = {}
    for name, desc in fdefs.items():
        where = f"{msgtype}.{name}"
        kwargs[name] = _convert(ts, desc, fields[name], where) if name in fields else _default(ts, desc, where)
    return ts.types[msgtype](**kwargs)
