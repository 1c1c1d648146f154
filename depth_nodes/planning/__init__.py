"""Motion-primitive planning (core, no ROS).

    state.py       VehicleState, DepthFrame: the planner's inputs
    distance.py    DistanceField protocol; Grid / Voxel (EDT) / Analytic fields
    primitives.py  minimum-jerk primitive fan + brake primitives, vectorised
    collision.py   all primitives x samples against a map and a depth image
    selection.py   cost terms and hysteresis selection
    planner.py     PrimitivePlanner.plan(...) -> PlanResult (brakes on stale input)
    commands.py    `depth-nodes bench planner`
"""
from depth_nodes.planning.distance import (AnalyticDistanceField, DistanceField, GridDistanceField,
                                           VoxelDistanceField)
from depth_nodes.planning.planner import PlannerConfig, PlanResult, PlanStatus, PrimitivePlanner
from depth_nodes.planning.primitives import PrimitiveLibrary, PrimitiveLibraryConfig, PrimitiveSet
from depth_nodes.planning.state import DepthFrame, VehicleState

__all__ = [
    "AnalyticDistanceField", "DepthFrame", "DistanceField", "GridDistanceField", "PlanResult", "PlanStatus",
    "PlannerConfig", "PrimitiveLibrary", "PrimitiveLibraryConfig", "PrimitivePlanner", "PrimitiveSet",
    "VehicleState", "VoxelDistanceField",
]
