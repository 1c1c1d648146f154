"""Indoor: a long hall split by cross walls with doorways, side rooms, pillars and furniture,
under a ceiling at 3 m.

``spec.density`` is pillars/furniture per 100 m^2 of floor. The building spans
x in [-3, length], |y| <= width / 2; start and goal keep a 2 m clear disc.
"""
from __future__ import annotations

import numpy as np

from depth_nodes.sim.materials import Material
from depth_nodes.sim.meshbuild import MeshBuilder
from depth_nodes.sim.world import World, WorldSpec
from depth_nodes.sim.worlds.common import far_from, start_goal, world_rng

_X0 = -3.0
CEILING_M = 3.0
DOOR_HEIGHT_M = 2.2
WALL_T = 0.2


def _wall_y(mb: MeshBuilder, x: float, y0: float, y1: float, doors: list[tuple[float, float]], mat) -> None:
    """Wall across the hall at ``x`` from y0 to y1 with doorway intervals (lintels above)."""
    edges = [y0]
    for lo, hi in sorted(doors):
        edges += [lo, hi]
    edges.append(y1)
    for a, b in zip(edges[0::2], edges[1::2]):
        if b - a > 1e-3:
            mb.box((x, (a + b) / 2, CEILING_M / 2), (WALL_T, b - a, CEILING_M), mat)
    for lo, hi in doors:
        h = CEILING_M - DOOR_HEIGHT_M
        mb.box((x, (lo + hi) / 2, DOOR_HEIGHT_M + h / 2), (WALL_T, hi - lo, h), mat)


def build(spec: WorldSpec, nthreads: int = 0) -> World:
    rng = world_rng(spec)
    length, width = spec.extent
    hw = width / 2
    mb = MeshBuilder()
    x_lo, x_hi = _X0, length
    mb.quad([(x_lo, -hw, 0.0), (x_hi, -hw, 0.0), (x_hi, hw, 0.0), (x_lo, hw, 0.0)], Material.FLOOR)
    mb.quad([(x_lo, -hw, CEILING_M), (x_lo, hw, CEILING_M), (x_hi, hw, CEILING_M), (x_hi, -hw, CEILING_M)],
            Material.PLASTER)
    wall_mat = Material.BRICK if rng.random() < 0.4 else Material.PLASTER
    for y in (-hw, hw):
        mb.box(((x_lo + x_hi) / 2, y, CEILING_M / 2), (x_hi - x_lo + WALL_T, WALL_T, CEILING_M), wall_mat)
    for x in (x_lo, x_hi):
        mb.box((x, 0.0, CEILING_M / 2), (WALL_T, width, CEILING_M), wall_mat)
    flat = lambda x, y: 0.0 * np.asarray(x) * np.asarray(y)  # noqa: E731
    start, goal = start_goal(length, flat)
    cross = []
    x = 4.0
    while x < length - 6.0:
        x += rng.uniform(4.0, 8.0)
        if x >= goal[0] - 2.5:   # keep the goal room clear of cross walls
            break
        n_doors = int(rng.integers(1, 3))
        doors = []
        seg = width / n_doors
        for k in range(n_doors):
            w = rng.uniform(1.6, 2.2)
            lo = -hw + k * seg + rng.uniform(0.4, max(seg - w - 0.4, 0.41))
            doors.append((lo, lo + w))
        _wall_y(mb, x, -hw, hw, doors, Material.PLASTER if rng.random() < 0.6 else Material.BRICK)
        cross.append(x)
    n = int(round(spec.density * (x_hi - x_lo) * width / 100.0))
    keep_out = [(start, 2.0 + 1.0), (goal, 2.0 + 1.0)]
    for _ in range(n):
        xy = np.array([rng.uniform(x_lo + 0.6, x_hi - 0.6), rng.uniform(-hw + 0.5, hw - 0.5)])
        if not far_from(xy, keep_out) or any(abs(xy[0] - c) < 1.5 for c in cross):
            continue
        kind = rng.random()
        yaw = rng.choice([0.0, np.pi / 2]) + rng.normal(0, 0.1)
        if kind < 0.2:  # pillar
            if rng.random() < 0.5:
                mb.box((xy[0], xy[1], CEILING_M / 2), (0.5, 0.5, CEILING_M), Material.CONCRETE)
            else:
                mb.frustum((*xy, 0.0), (*xy, CEILING_M), 0.25, 0.25, Material.CONCRETE, segments=16)
        elif kind < 0.55:  # table: top and legs
            sx, sy = rng.uniform(0.8, 1.8), rng.uniform(0.6, 1.0)
            mb.box((xy[0], xy[1], 0.74), (sx, sy, 0.05), Material.WOOD, yaw=yaw)
            c, s = np.cos(yaw), np.sin(yaw)
            for dx, dy in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
                ox, oy = dx * (sx / 2 - 0.05), dy * (sy / 2 - 0.05)
                mb.box((xy[0] + c * ox - s * oy, xy[1] + s * ox + c * oy, 0.36), (0.05, 0.05, 0.72),
                       Material.METAL, yaw=yaw)
        elif kind < 0.8:  # shelf / cabinet
            h = rng.uniform(1.2, 2.2)
            mb.box((xy[0], xy[1], h / 2), (rng.uniform(0.8, 2.0), 0.45, h), Material.WOOD, yaw=yaw)
        else:  # boxes
            s = rng.uniform(0.4, 1.0)
            mb.box((xy[0], xy[1], s / 2), (s, s * rng.uniform(0.8, 1.5), s), Material.WOOD, yaw=yaw)
    v, t, m = mb.build()
    return World(v, t, m, start=start, goal=goal, spec=spec, nthreads=nthreads)
