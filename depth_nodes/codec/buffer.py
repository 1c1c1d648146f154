"""Helpers shared by the message codecs: byte buffers and checked integer fields.

Message objects are duck-typed: anything with the standard ROS attribute names
works (an rclpy message, a ``rosbags`` dataclass read from a bag, a
``types.SimpleNamespace``). A ``data`` field may be ``array.array('B')``
(rclpy), a 1-D ``numpy.uint8`` array (rosbags), ``bytes``/``bytearray``/
``memoryview`` or a list of ints.
"""
from __future__ import annotations

import sys

import numpy as np

#: Byte-order character of this machine for numpy dtype strings.
NATIVE_ORDER = "<" if sys.byteorder == "little" else ">"


def as_byte_buffer(data, name: str = "data") -> np.ndarray:
    """View ``data`` as a 1-D uint8 array without copying when it supports the buffer protocol.

    Lists/tuples of ints are copied (and range-checked). Anything else raises ValueError.
    """
    if isinstance(data, np.ndarray):
        if data.dtype == np.uint8 and data.ndim == 1:
            return data
        if not data.flags.c_contiguous:
            raise ValueError(f"{name} must be a C-contiguous buffer, got strides {data.strides}")
        return data.reshape(-1).view(np.uint8)
    if isinstance(data, (list, tuple)):
        try:
            arr = np.asarray(data, dtype=np.int64).reshape(-1)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ValueError(f"{name} must be a sequence of ints in 0..255: {exc}") from None
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise ValueError(f"{name} values must be in 0..255, got {arr.min()}..{arr.max()}")
        return arr.astype(np.uint8)
    if isinstance(data, str):
        raise ValueError(f"{name} must be bytes-like, got str")
    try:
        view = memoryview(data)
    except TypeError:
        raise ValueError(f"{name} must be bytes-like, got {type(data).__name__}") from None
    if not view.c_contiguous:
        raise ValueError(f"{name} must be a C-contiguous buffer")
    return np.frombuffer(view, dtype=np.uint8)


def get_uint(msg, field: str, *, lo: int = 0, hi: int = 2**32 - 1, owner: str = "message") -> int:
    """Read integer attribute ``field`` of ``msg`` and check ``lo <= value <= hi``."""
    if not hasattr(msg, field):
        raise ValueError(f"{owner} has no field {field!r}")
    value = getattr(msg, field)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{owner}.{field} must be an int, got {type(value).__name__} {value!r}")
    value = int(value)
    if not lo <= value <= hi:
        raise ValueError(f"{owner}.{field}={value} outside {lo}..{hi}")
    return value


def get_bool(msg, field: str, *, owner: str = "message") -> bool:
    """Read a bool/uint8 flag attribute (``is_bigendian``, ``is_dense``)."""
    if not hasattr(msg, field):
        raise ValueError(f"{owner} has no field {field!r}")
    value = getattr(msg, field)
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)) and int(value) in (0, 1):
        return bool(value)
    raise ValueError(f"{owner}.{field} must be a bool or 0/1, got {value!r}")


def get_str(msg, field: str, *, owner: str = "message") -> str:
    """Read a string attribute."""
    value = getattr(msg, field, None)
    if not isinstance(value, str):
        raise ValueError(f"{owner}.{field} must be a str, got {type(value).__name__}")
    return value


def byteorder_char(is_bigendian: bool) -> str:
    """numpy byte-order character for a message's ``is_bigendian`` flag."""
    return ">" if is_bigendian else "<"
