"""Test helpers for the codec tests: build duck-typed and rosbags messages from field dicts."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from rosbags.typesys import Stores, get_typestore

TYPESTORE = get_typestore(Stores.ROS2_KILTED)
BAG = TYPESTORE.types


def bag_header(frame_id: str = "cam", sec: int = 1, nanosec: int = 2):
    return BAG["std_msgs/msg/Header"](stamp=BAG["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec),
                                      frame_id=frame_id)


def raw_bytes(data) -> bytes:
    """The bytes of any buffer (bytes, array.array, numpy array)."""
    return memoryview(data).tobytes()


def ns_image(fields: dict) -> SimpleNamespace:
    """A SimpleNamespace Image from codec fields (data as bytes, as a transport would hand it over)."""
    return SimpleNamespace(**{**fields, "data": raw_bytes(fields["data"])})


def bag_image(fields: dict):
    """A rosbags sensor_msgs/Image (data: uint8 ndarray), after a CDR serialise/deserialise round trip."""
    cls = BAG["sensor_msgs/msg/Image"]
    msg = cls(header=bag_header(), height=fields["height"], width=fields["width"], encoding=fields["encoding"],
              is_bigendian=int(fields["is_bigendian"]), step=fields["step"],
              data=np.frombuffer(raw_bytes(fields["data"]), dtype=np.uint8))
    return TYPESTORE.deserialize_cdr(TYPESTORE.serialize_cdr(msg, cls.__msgtype__), cls.__msgtype__)


def ns_cloud(fields: dict) -> SimpleNamespace:
    """A SimpleNamespace PointCloud2 whose fields are SimpleNamespace PointFields."""
    pf = [SimpleNamespace(name=f.name, offset=f.offset, datatype=f.datatype, count=f.count) for f in fields["fields"]]
    return SimpleNamespace(**{**fields, "fields": pf, "data": raw_bytes(fields["data"])})


def bag_cloud(fields: dict):
    """A rosbags sensor_msgs/PointCloud2, after a CDR serialise/deserialise round trip."""
    cls, pf = BAG["sensor_msgs/msg/PointCloud2"], BAG["sensor_msgs/msg/PointField"]
    msg = cls(header=bag_header("map"), height=fields["height"], width=fields["width"],
              fields=[pf(name=f.name, offset=f.offset, datatype=f.datatype, count=f.count) for f in fields["fields"]],
              is_bigendian=bool(fields["is_bigendian"]), point_step=fields["point_step"],
              row_step=fields["row_step"], data=np.frombuffer(raw_bytes(fields["data"]), dtype=np.uint8),
              is_dense=bool(fields["is_dense"]))
    return TYPESTORE.deserialize_cdr(TYPESTORE.serialize_cdr(msg, cls.__msgtype__), cls.__msgtype__)


def value_error_or_result(fn, *args, **kwargs):
    """Call ``fn``; return its result, or None when it raised ValueError (any other exception propagates)."""
    try:
        return fn(*args, **kwargs)
    except ValueError as exc:
        assert str(exc), "ValueError without a message"
        return None
