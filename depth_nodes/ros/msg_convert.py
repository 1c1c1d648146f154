"""Generic message plumbing between rclpy and ``rosbags`` (bags), by type name and introspection.

* :func:`message_class` resolves ``"sensor_msgs/msg/Image"`` (or ``sensor_msgs/Image``)
  to the rclpy message class.
* :func:`to_rclpy` converts any message object with the ROS field names (a
  ``rosbags`` dataclass from :class:`~depth_nodes.eval.bagio.BagSource`, a
  SimpleNamespace ...) into an rclpy message, field by field, driven by the
  rclpy class's ``get_fields_and_field_types()``: nested messages, fixed arrays,
  bounded/unbounded sequences; numeric arrays go through one buffer copy.
* :func:`to_rosbags` converts an rclpy message into a ``rosbags`` message (via CDR).

Replaying or recording raw CDR bytes (``Publisher.publish(bytes)``,
``create_subscription(..., raw=True)``) needs no conversion at all and is what
the bag player/recorder nodes use; these helpers are for code that holds
decoded messages.
"""
from __future__ import annotations

import importlib
import re
from array import array
from functools import lru_cache

import numpy as np
from rclpy.serialization import serialize_message

from depth_nodes.ros.conversions import _byte_array, _new

__all__ = ["message_class", "to_rclpy", "to_rosbags", "type_name"]

#: rclpy basic numeric type -> (numpy dtype, array.array typecode).
_NUMERIC = {
    "float": ("float32", "f"), "double": ("float64", "d"), "int8": ("int8", "b"), "uint8": ("uint8", "B"),
    "int16": ("int16", "h"), "uint16": ("uint16", "H"), "int32": ("int32", "i"), "uint32": ("uint32", "I"),
    "int64": ("int64", "q"), "uint64": ("uint64", "Q"),
}
_SEQUENCE = re.compile(r"^sequence<(.+?)(?:,\s*(\d+))?>$")
_FIXED = re.compile(r"^(.+)\[(\d+)\]$")
_NAME = re.compile(r"^([A-Za-z_]\w*)/(?:msg/)?([A-Za-z_]\w*)$")


@lru_cache(maxsize=None)
def message_class(name: str):
    """rclpy message class for ``pkg/msg/Name`` or ``pkg/Name``; ValueError if unknown or not installed."""
    m = _NAME.match(name.strip()) if isinstance(name, str) else None
    if m is None:
        raise ValueError(f"message type must look like 'pkg/msg/Name', got {name!r}")
    pkg, msg = m.groups()
    try:
        cls = getattr(importlib.import_module(f"{pkg}.msg"), msg)
    except (ImportError, AttributeError):
        raise ValueError(f"message type {name!r} is not available (is the {pkg} package installed?)") from None
    if not hasattr(cls, "get_fields_and_field_types"):
        raise ValueError(f"{name!r} is not a ROS message type")
    return cls


def type_name(msg_or_cls) -> str:
    """``pkg/msg/Name`` of an rclpy message instance or class."""
    cls = msg_or_cls if isinstance(msg_or_cls, type) else type(msg_or_cls)
    pkg = cls.__module__.split(".")[0]
    return f"{pkg}/msg/{cls.__name__}"


def _element_type(typ: str) -> tuple[str, str, int | None]:
    """(kind, element type, size) with kind ``scalar`` | ``sequence`` | ``array``."""
    m = _SEQUENCE.match(typ)
    if m:
        return "sequence", m.group(1), int(m.group(2)) if m.group(2) else None
    m = _FIXED.match(typ)
    if m:
        return "array", m.group(1), int(m.group(2))
    return "scalar", typ, None


def _is_message(elem: str) -> bool:
    return "/" in elem


def _numeric_buffer(value, dtype: str, where: str) -> np.ndarray:
    try:
        return np.ascontiguousarray(np.asarray(value), dtype=dtype).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"field {where}: cannot convert to {dtype}: {exc}") from None


def _convert_field(value, typ: str, where: str):
    kind, elem, size = _element_type(typ)
    if kind == "scalar":
        if _is_message(elem):
            return to_rclpy(value, message_class(elem), _where=where)
        if elem in _NUMERIC:
            return float(value) if elem in ("float", "double") else int(value)
        if elem == "boolean":
            return bool(value)
        if elem in ("byte", "octet"):
            return bytes([int(value)]) if not isinstance(value, bytes) else value
        return str(value)  # string, wstring, bounded strings, char as str
    if _is_message(elem):
        cls = message_class(elem)
        return [to_rclpy(v, cls, _where=f"{where}[{i}]") for i, v in enumerate(value)]
    if elem in _NUMERIC:
        dtype, code = _NUMERIC[elem]
        buf = _numeric_buffer(value, dtype, where)
        if size is not None and kind == "array" and buf.size != size:
            raise ValueError(f"field {where}: expected {size} elements, got {buf.size}")
        if kind == "array":
            return buf
        if elem == "uint8":
            return _byte_array(buf)
        out = array(code)
        out.frombytes(memoryview(buf).cast("B"))
        return out
    if elem == "boolean":
        return [bool(v) for v in value]
    if elem in ("byte", "octet"):
        return [bytes([int(v)]) for v in (value if not isinstance(value, bytes) else list(value))]
    return [str(v) for v in value]


def to_rclpy(src, cls, *, _where: str = ""):
    """An instance of rclpy message class ``cls`` with every field taken from ``src``'s attributes.

    ``src`` lacking a field, or holding a value of the wrong shape, raises ValueError naming the field.
    """
    msg = _new(cls)
    for field, typ in cls.get_fields_and_field_types().items():
        where = f"{_where}.{field}" if _where else field
        if not hasattr(src, field):
            raise ValueError(f"{type(src).__name__} has no field {where!r} needed for {type_name(cls)}")
        try:
            setattr(msg, field, _convert_field(getattr(src, field), typ, where))
        except (AssertionError, TypeError, OverflowError) as exc:
            raise ValueError(f"field {where} ({typ}): {exc}") from None
    return msg


def to_rosbags(msg, typestore):
    """The ``rosbags`` message (from ``typestore``) equal to rclpy message ``msg`` (CDR round trip)."""
    return typestore.deserialize_cdr(serialize_message(msg), type_name(msg))
