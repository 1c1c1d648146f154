"""Helpers shared by the world generators: seeded streams, terrain, keep-out zones."""
from __future__ import annotations

import numpy as np

from depth_nodes.sim.world import WorldSpec

_KIND_STREAM = {"forest": 11, "urban": 12, "indoor": 13}


def world_rng(spec: WorldSpec) -> np.random.Generator:
    """The generator stream for a spec (distinct per kind and seed)."""
    return np.random.default_rng([spec.seed, _KIND_STREAM[spec.kind]])


class Terrain:
    """Smooth height field ``z = h(x, y)`` from a few random sinusoids (metres)."""

    def __init__(self, rng: np.random.Generator, amplitude: float, n_waves: int = 6):
        self.amp = amplitude * rng.uniform(0.3, 1.0, n_waves) / np.sqrt(n_waves)
        wavelength = rng.uniform(6.0, 30.0, n_waves)
        ang = rng.uniform(0.0, 2 * np.pi, n_waves)
        self.k = (2 * np.pi / wavelength)[:, None] * np.stack([np.cos(ang), np.sin(ang)], 1)
        self.phase = rng.uniform(0.0, 2 * np.pi, n_waves)

    def __call__(self, x, y) -> np.ndarray:
        x, y = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float))
        arg = x[..., None] * self.k[:, 0] + y[..., None] * self.k[:, 1] + self.phase
        return (self.amp * np.sin(arg)).sum(-1)


def far_from(xy: np.ndarray, keep_out: list[tuple[np.ndarray, float]]) -> bool:
    """True if 2D point ``xy`` is outside every (centre, radius) keep-out disc."""
    return all(np.hypot(*(np.asarray(xy) - c[:2])) > r for c, r in keep_out)


def start_goal(length: float, z_of) -> tuple[np.ndarray, np.ndarray]:
    """Start near x = 0 and goal near the far end, both at flight height above the ground."""
    from depth_nodes.sim.world import FLIGHT_HEIGHT_M

    s = np.array([0.0, 0.0, 0.0])
    g = np.array([length - 4.0, 0.0, 0.0])
    s[2] = float(z_of(s[0], s[1])) + FLIGHT_HEIGHT_M
    g[2] = float(z_of(g[0], g[1])) + FLIGHT_HEIGHT_M
    return s, g
