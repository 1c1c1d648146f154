"""Helpers shared by the world generators: seeded streams, terrain, keep-out zones."""
from __future__ import annotations

import numpy as np

from depth_nodes.sim.materials import Material
from depth_nodes.sim.meshbuild import MeshBuilder
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


#: How far the backdrop terrain reaches beyond a world's ground (m). From flight height
#: (1.5 m) the far rim is 0.3 degrees below the horizon, about one pixel at 320x240.
BACKDROP_REACH_M = 256.0


def add_backdrop(mb: MeshBuilder, xs: np.ndarray, ys: np.ndarray, z_of, material: Material,
                 reach: float = BACKDROP_REACH_M) -> int:
    """Terrain around the rectangle ``xs[0]..xs[-1]`` by ``ys[0]..ys[-1]`` out to ``reach`` metres.

    A world's ground ends a few metres past its goal; without more terrain the
    camera looks from the goal into a void under the horizon that no real flight
    sees (a stereo network takes the textureless band there for a near wall).
    Four strips with cells growing outward (2, 4, 8, ... m) share the
    rectangle's edge vertices, so there are no cracks or T-junctions. Heights
    come from ``z_of(X, Y)``. Returns the number of triangles added; they come
    last in the builder, after every object of the world.
    """
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    steps = [2.0]
    while steps[-1] < reach:
        steps.append(steps[-1] * 2.0)
    out = np.array(steps)
    before = mb.n_triangles
    x_all = np.concatenate([xs[0] - out[::-1], xs, xs[-1] + out])
    strips = [(np.append(xs[0] - out[::-1], xs[0]), ys),            # behind the rectangle
              (np.insert(xs[-1] + out, 0, xs[-1]), ys),             # ahead of it
              (x_all, np.append(ys[0] - out[::-1], ys[0])),         # each side, corners included
              (x_all, np.insert(ys[-1] + out, 0, ys[-1]))]
    for sx, sy in strips:
        X, Y = np.meshgrid(sx, sy)
        mb.heightfield(sx, sy, z_of(X, Y), material)
    return mb.n_triangles - before
