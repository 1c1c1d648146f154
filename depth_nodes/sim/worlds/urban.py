"""Urban street: building rows on both sides, and in the street poles, wires, thin bars,
walls, crates and parked vehicles.

``spec.density`` is street obstacle groups per 100 m^2 of street. Start and goal
keep a 3 m obstacle-free disc.
"""
from __future__ import annotations

import numpy as np

from depth_nodes.sim.materials import Material
from depth_nodes.sim.meshbuild import MeshBuilder
from depth_nodes.sim.world import World, WorldSpec
from depth_nodes.sim.worlds.common import add_backdrop, far_from, start_goal, world_rng

_X0 = -10.0


def _buildings(mb: MeshBuilder, rng: np.random.Generator, length: float, y_face: float, side: int) -> None:
    x = _X0 - 5.0
    while x < length + 5.0:
        w = rng.uniform(8.0, 20.0)
        depth = rng.uniform(8.0, 15.0)
        h = rng.uniform(6.0, 28.0)
        setback = rng.uniform(0.0, 2.0)
        y_c = side * (y_face + setback + depth / 2)
        mat = Material.BRICK if rng.random() < 0.5 else Material.CONCRETE
        mb.box((x + w / 2, y_c, h / 2), (w, depth, h), mat)
        x += w + (rng.uniform(2.0, 6.0) if rng.random() < 0.4 else 0.0)


def _pole(mb: MeshBuilder, rng: np.random.Generator, xy, height: float) -> np.ndarray:
    r = rng.uniform(0.06, 0.14)
    mb.frustum((xy[0], xy[1], 0.0), (xy[0], xy[1], height), r, r * 0.8, Material.METAL, segments=10)
    return np.array([xy[0], xy[1], height])


def _obstacle(mb: MeshBuilder, rng: np.random.Generator, xy: np.ndarray, kind: int) -> None:
    yaw = rng.uniform(0, np.pi)
    along = np.array([np.cos(yaw), np.sin(yaw)])
    if kind == 0:  # lamp/sign pole
        _pole(mb, rng, xy, rng.uniform(3.0, 7.0))
    elif kind == 1:  # two poles with a sagging wire at flight-relevant height
        span = rng.uniform(4.0, 10.0)
        h = rng.uniform(2.0, 5.0)
        a = _pole(mb, rng, xy - along * span / 2, h + 0.3)
        b = _pole(mb, rng, xy + along * span / 2, h + 0.3)
        a[2] = b[2] = h
        sag = (a + b) / 2 - np.array([0.0, 0.0, rng.uniform(0.1, 0.5)])
        r = rng.uniform(0.008, 0.02)
        mb.frustum(a, sag, r, r, Material.METAL, segments=6)
        mb.frustum(sag, b, r, r, Material.METAL, segments=6)
    elif kind == 2:  # railing: two posts and thin horizontal bars
        span = rng.uniform(2.0, 6.0)
        a = np.array([*(xy - along * span / 2), 0.0])
        b = np.array([*(xy + along * span / 2), 0.0])
        for p in (a, b):
            mb.frustum(p, p + [0, 0, 1.2], 0.04, 0.04, Material.METAL, segments=8)
        for z in (0.6, 1.15):
            mb.frustum(a + [0, 0, z], b + [0, 0, z], 0.025, 0.025, Material.METAL, segments=6)
    elif kind == 3:  # wall segment
        mat = Material.BRICK if rng.random() < 0.5 else Material.CONCRETE
        h = rng.uniform(1.0, 3.0)
        mb.box((xy[0], xy[1], h / 2), (rng.uniform(2.0, 8.0), rng.uniform(0.2, 0.4), h), mat, yaw=yaw)
    elif kind == 4:  # stack of crates
        for i in range(int(rng.integers(1, 4))):
            s = rng.uniform(0.5, 1.3)
            off = rng.uniform(-0.3, 0.3, 2)
            mb.box((xy[0] + off[0], xy[1] + off[1], s / 2 + i * 0.4), (s, s, s), Material.WOOD, yaw=yaw)
    else:  # parked vehicle: body and cabin
        mb.box((xy[0], xy[1], 0.75), (4.4, 1.8, 1.1), Material.METAL, yaw=yaw)
        mb.box((xy[0], xy[1], 1.55), (2.4, 1.6, 0.6), Material.METAL, yaw=yaw)


def build(spec: WorldSpec, nthreads: int = 0) -> World:
    rng = world_rng(spec)
    length, width = spec.extent
    mb = MeshBuilder()
    y_face = width / 2
    x_lo, x_hi = _X0 - 10.0, length + 10.0
    y_hi = y_face + 25.0
    mb.quad([(x_lo, -y_hi, 0.0), (x_hi, -y_hi, 0.0), (x_hi, y_hi, 0.0), (x_lo, y_hi, 0.0)], Material.CONCRETE)
    for side in (-1, 1):
        _buildings(mb, rng, length, y_face, side)
    flat = lambda x, y: 0.0 * np.asarray(x) * np.asarray(y)  # noqa: E731
    start, goal = start_goal(length, flat)
    keep_out = [(start, 3.0 + 5.0), (goal, 3.0 + 5.0)]  # + largest obstacle half-size
    n = int(round(spec.density * (length - _X0) * width / 100.0))
    for _ in range(n):
        xy = np.array([rng.uniform(_X0, length), rng.uniform(-y_face + 1.0, y_face - 1.0)])
        kind = int(rng.choice(6, p=[0.25, 0.15, 0.15, 0.15, 0.15, 0.15]))
        if far_from(xy, keep_out):
            _obstacle(mb, rng, xy, kind)
    n_back = add_backdrop(mb, np.array([x_lo, x_hi]), np.array([-y_hi, y_hi]), flat, Material.CONCRETE)
    v, t, m = mb.build()
    return World(v, t, m, start=start, goal=goal, spec=spec, nthreads=nthreads, backdrop_triangles=n_back)
