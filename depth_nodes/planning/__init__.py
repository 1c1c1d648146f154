"""Motion-primitive planning (core, no ROS).

    state.py       VehicleState, DepthFrame: the planner's inputs
    distance.py    DistanceField protocol; Grid / Voxel (EDT) / Analytic fields
    primitives.py  minimum-jerk primitive fan + brake primitives, vectorised
    collision.py   all primitives x samples against a map and a depth image
    selection.py   cost terms and hysteresis selection
    guidance.py    GoalGuidance: geodesic cost-to-go around observed obstacles
    planner.py     PrimitivePlanner.plan(...) -> PlanResult (brakes on stale input)
    kernels.py     compiled (numba) inner loops of generation, checking and yaw
    commands.py    `depth-nodes bench planner`
"""
from __future__ import annotations

from depth_nodes.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "AnalyticDistanceField": "distance",
    "DistanceField": "distance",
    "GridDistanceField": "distance",
    "VoxelDistanceField": "distance",
    "GoalGuidance": "guidance",
    "PlannerConfig": "planner",
    "PlanResult": "planner",
    "PlanStatus": "planner",
    "PrimitivePlanner": "planner",
    "PrimitiveLibrary": "primitives",
    "PrimitiveLibraryConfig": "primitives",
    "PrimitiveSet": "primitives",
    "DepthFrame": "state",
    "VehicleState": "state",
})
