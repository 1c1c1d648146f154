"""depth_nodes.mapping: TSDF map (Open3D VoxelBlockGrid), distance queries, local ESDF, pose buffer.

Names are imported lazily (PEP 562) so that light users (the CLI parser, the
pose buffer) do not pay for importing Open3D.
"""
from __future__ import annotations

from depth_nodes.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "TsdfConfig": "config",
    "TsdfMap": "tsdf",
    "IntegrationResult": "tsdf",
    "EsdfGrid": "esdf",
    "esdf_window": "esdf",
    "PoseBuffer": "pose_buffer",
    "Mapper": "mapper",
})
