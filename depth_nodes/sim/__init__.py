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

from depth_nodes.sim.appearance import Appearance
from depth_nodes.sim.materials import Material
from depth_nodes.sim.odometry import OdometryNoise, OdometrySimulator
from depth_nodes.sim.radar import RadarConfig, RadarScan, RadarSimulator, transform_radar_points
from depth_nodes.sim.render import CameraRenderer, StereoFrame, render_depth, render_rgbd, stereo_right_pose
from depth_nodes.sim.rig import SensorRig
from depth_nodes.sim.route import plan_route, route_trajectory
from depth_nodes.sim.suite import SensorFrame, SensorSuite
from depth_nodes.sim.vehicle import Vehicle, VehicleState
from depth_nodes.sim.world import RayHits, World, WorldSpec, build_world

__all__ = [
    "Appearance", "CameraRenderer", "Material", "OdometryNoise", "OdometrySimulator", "RadarConfig",
    "RadarScan", "RadarSimulator", "RayHits", "SensorFrame", "SensorRig", "SensorSuite", "StereoFrame",
    "Vehicle", "VehicleState", "World", "WorldSpec", "build_world", "plan_route", "render_depth",
    "render_rgbd", "route_trajectory", "stereo_right_pose", "transform_radar_points",
]
