"""All sensors of a rig in one world: one call renders a synchronised frame."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from depth_nodes.sim.appearance import Appearance
from depth_nodes.sim.radar import RadarScan, RadarSimulator
from depth_nodes.sim.render import CameraRenderer
from depth_nodes.sim.rig import SensorRig
from depth_nodes.sim.world import World


@dataclass
class SensorFrame:
    """Synchronised sensor data at one body pose.

    ``rgb``/``right`` uint8 (H, W, 3) (``right`` is None without stereo), ``depth``
    float32 (H, W) metres along the left optical axis (NaN on miss), ``radar`` in
    the ``radar`` frame (None without radar), poses 4x4 world <- frame.
    """

    T_world_body: np.ndarray
    T_world_cam: np.ndarray
    rgb: np.ndarray
    depth: np.ndarray
    right: np.ndarray | None = None
    radar: RadarScan | None = None


class SensorSuite:
    """Camera (+ stereo right) renderer and radar for one world and rig."""

    def __init__(self, world: World, rig: SensorRig | None = None, appearance: Appearance | None = None):
        self.world = world
        self.rig = rig or SensorRig()
        self.appearance = appearance or Appearance.for_world(world.spec)
        self.camera = CameraRenderer(world, self.rig.camera, self.appearance)
        self.radar = RadarSimulator(self.rig.radar)

    def render(self, T_world_body, v_world, rng: np.random.Generator, stereo: bool = True,
               radar: bool = True) -> SensorFrame:
        """Render every sensor at ``T_world_body`` moving at ``v_world`` (m/s, world frame)."""
        T_wb = np.asarray(T_world_body, dtype=np.float64)
        T_wc = T_wb @ self.rig.T_body_camera
        if stereo:
            st = self.camera.stereo(T_wc, self.rig.baseline_m, rng)
            rgb, depth, right = st.left, st.depth, st.right
        else:
            (rgb, depth), right = self.camera.rgbd(T_wc, rng), None
        scan = self.radar.scan(self.world, T_wb @ self.rig.T_body_radar, v_world, rng) if radar else None
        return SensorFrame(T_world_body=T_wb, T_world_cam=T_wc, rgb=rgb, depth=depth, right=right, radar=scan)
