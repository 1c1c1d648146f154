"""Message classes by type name, for nodes that handle topics of any type.

The bag player and recorder pass raw CDR bytes through untouched
(``Publisher.publish(bytes)``, ``create_subscription(..., raw=True)``), so the
only thing they need is the rclpy class for a type name read from a bag or
discovered on the graph: :func:`message_class`.
"""
from __future__ import annotations

import importlib
import re
from functools import lru_cache

__all__ = ["message_class"]

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
