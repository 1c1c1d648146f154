"""depth_nodes.mapping: TSDF map (Open3D VoxelBlockGrid), distance queries, local ESDF, pose buffer.

Names are imported lazily (PEP 562) so that light users (the CLI parser, the
pose buffer) do not pay for importing Open3D.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "TsdfConfig": "config",
    "TsdfMap": "tsdf",
    "IntegrationResult": "tsdf",
    "EsdfGrid": "esdf",
    "esdf_window": "esdf",
    "PoseBuffer": "pose_buffer",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__():
    return sorted(list(globals()) + __all__)
