"""Bag messages -> arrays, by role, through :mod:`depth_nodes.codec` (the boundary before sync).

================  ====================================================================
role              payload
================  ====================================================================
image/left/right  uint8 (H, W, 3) RGB (mono images are replicated to 3 channels)
*_info            :class:`depth_nodes.camera.PinholeCamera`
radar             :class:`Cloud`: (N, 3) float32 xyz in ``frame_id`` + all point fields
odom, gt_odom     4x4 float64 ``T_parent_child`` (``map`` <- body for the simulator)
gt_depth          float32 (H, W) metres, NaN for no return (REP-118)
world_spec, rig   the JSON document carried by a ``std_msgs/String`` (dict)
================  ====================================================================

A message that fails to decode is skipped by :class:`StreamDecoder` with one
warning per role and counted, so one bad message never stops a replay.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from depth_nodes.codec import (
    camera_info_to_pinhole,
    cloud_to_structured,
    cloud_to_xyz,
    depth_to_metres,
    image_to_rgb,
    pose_msg_to_matrix,
)

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cloud:
    """A decoded PointCloud2: xyz (N, 3) float32 metres in ``frame_id``, plus every field."""

    xyz: np.ndarray
    fields: np.ndarray
    frame_id: str


def _cloud(msg) -> Cloud:
    header = getattr(msg, "header", None)
    frame_id = getattr(header, "frame_id", "") if header is not None else ""
    fields = cloud_to_structured(msg)
    xyz = cloud_to_xyz(msg, skip_nans=False)
    keep = np.all(np.isfinite(xyz), axis=1)
    return Cloud(xyz[keep], fields[keep], str(frame_id))


def _json_string(msg) -> Any:
    data = getattr(msg, "data", None)
    if not isinstance(data, str):
        raise ValueError(f"expected a std_msgs/String with JSON data, got {type(msg).__name__}")
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise ValueError(f"String.data is not JSON: {exc}") from None


DECODERS: dict[str, Callable[[object], Any]] = {
    "image": image_to_rgb,
    "left": image_to_rgb,
    "right": image_to_rgb,
    "camera_info": camera_info_to_pinhole,
    "left_info": camera_info_to_pinhole,
    "right_info": camera_info_to_pinhole,
    "radar": _cloud,
    "odom": pose_msg_to_matrix,
    "gt_odom": pose_msg_to_matrix,
    "gt_depth": depth_to_metres,
    "world_spec": _json_string,
    "rig": _json_string,
}


def decode_message(role: str, msg) -> Any:
    """Decode ``msg`` for ``role`` (see the table above); ValueError for unknown roles or bad messages."""
    decoder = DECODERS.get(role)
    if decoder is None:
        raise ValueError(f"no decoder for role {role!r}; known roles: {sorted(DECODERS)}")
    return decoder(msg)


class StreamDecoder:
    """Turn ``(role, topic, stamp_ns, msg)`` items into ``(role, stamp_ns, payload)``.

    Undecodable messages are dropped: ``errors[role]`` counts them and the first
    per role is logged as a warning naming the topic and reason.
    """

    def __init__(self) -> None:
        self.errors: dict[str, int] = {}

    def __call__(self, items: Iterable[tuple[str, str, int, object]]) -> Iterator[tuple[str, int, Any]]:
        for role, topic, stamp_ns, msg in items:
            try:
                payload = decode_message(role, msg)
            except ValueError as exc:
                n = self.errors.get(role, 0)
                if n == 0:
                    LOG.warning("dropping %s message(s) on %s: %s", role, topic, exc)
                self.errors[role] = n + 1
                continue
            yield role, stamp_ns, payload
