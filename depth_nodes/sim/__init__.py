"""Simulator: procedural worlds, ray-cast sensors, a kinematic drone, datasets and bags.

Typical use::

    from depth_nodes.sim import WorldSpec, build_world, SensorRig, SensorSuite
    world = build_world(WorldSpec("forest", seed=7, density="medium"))
    suite = SensorSuite(world, SensorRig())
    frame = suite.render(T_world_body, v_world, np.random.default_rng(0))

Frames: world ``map`` (z up), body ``base_link`` (REP-103), camera optical
frames (z forward, x right, y down), ``radar`` aligned with the body.
"""
from __future__ import annotations

from depth_nodes.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "Appearance": "appearance",
    "Material": "materials",
    "OdometryNoise": "odometry",
    "OdometrySimulator": "odometry",
    "RadarConfig": "radar",
    "RadarScan": "radar",
    "RadarSimulator": "radar",
    "transform_radar_points": "radar",
    "CameraRenderer": "render",
    "StereoFrame": "render",
    "render_depth": "render",
    "render_rgbd": "render",
    "stereo_right_pose": "render",
    "SensorRig": "rig",
    "plan_route": "route",
    "route_trajectory": "route",
    "SensorFrame": "suite",
    "SensorSuite": "suite",
    "Vehicle": "vehicle",
    "VehicleState": "vehicle",
    "RayHits": "world",
    "World": "world",
    "WorldSpec": "world",
    "build_world": "world",
})
