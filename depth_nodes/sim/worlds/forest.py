"""Forest: leaning tapered trunks with branches and canopies, bushes, logs, uneven ground.

``spec.density`` is trees per 100 m^2 over the wooded area (x in [-6, length],
|y| <= width / 2). Start and goal keep a tree-free disc of 4 m around them.
"""
from __future__ import annotations

import numpy as np

from depth_nodes.sim.materials import Material
from depth_nodes.sim.meshbuild import MeshBuilder
from depth_nodes.sim.world import World, WorldSpec
from depth_nodes.sim.worlds.common import Terrain, add_backdrop, far_from, start_goal, world_rng

_X0 = -6.0  # wooded area starts behind the start point


def _tree(mb: MeshBuilder, rng: np.random.Generator, base: np.ndarray) -> None:
    r = float(np.clip(rng.lognormal(np.log(0.22), 0.45), 0.1, 0.6))
    height = rng.uniform(7.0, 16.0)
    tilt = np.radians(rng.uniform(0.0, 9.0))
    az = rng.uniform(0, 2 * np.pi)
    lean = np.array([np.sin(tilt) * np.cos(az), np.sin(tilt) * np.sin(az), np.cos(tilt)])
    mid = base + lean * height * 0.45
    bend = lean + rng.normal(0, 0.05, 3)
    top = mid + bend / np.linalg.norm(bend) * height * 0.55
    r_mid = r * rng.uniform(0.7, 0.85)
    r_top = r * rng.uniform(0.25, 0.45)
    mb.frustum(base - lean * 0.3, mid, r * 1.1, r_mid, Material.BARK, segments=14, cap=False)
    mb.frustum(mid, top, r_mid, r_top, Material.BARK, segments=10)
    for _ in range(int(rng.integers(1, 6))):
        s = rng.uniform(0.2, 0.85)
        p0 = base + (mid - base) * (s / 0.45) if s < 0.45 else mid + (top - mid) * ((s - 0.45) / 0.55)
        b_az = rng.uniform(0, 2 * np.pi)
        elev = np.radians(rng.uniform(5.0, 45.0))
        d = np.array([np.cos(elev) * np.cos(b_az), np.cos(elev) * np.sin(b_az), np.sin(elev)])
        length = rng.uniform(0.6, 2.5)
        br = rng.uniform(0.025, 0.06)
        mb.frustum(p0, p0 + d * (length + r), br, br * 0.4, Material.BARK, segments=5)
    if rng.random() < 0.8:
        crown = rng.uniform(1.5, 3.2)
        mb.ellipsoid(top - lean * crown * 0.3, (crown, crown, crown * rng.uniform(0.8, 1.4)),
                     Material.FOLIAGE, subdiv=1, rng=rng, roughness=0.25)


def build(spec: WorldSpec, nthreads: int = 0) -> World:
    rng = world_rng(spec)
    length, width = spec.extent
    terrain = Terrain(rng, amplitude=0.35)
    mb = MeshBuilder()
    xs = np.arange(_X0 - 4.0, length + 4.01, 1.0)
    ys = np.linspace(-width / 2 - 2.0, width / 2 + 2.0, int(np.ceil(width + 4.0)) + 1)
    X, Y = np.meshgrid(xs, ys)
    mb.heightfield(xs, ys, terrain(X, Y), Material.GROUND)
    start, goal = start_goal(length, terrain)
    keep_out = [(start, 4.0), (goal, 4.0)]
    area = (length - _X0) * width
    n_trees = int(round(spec.density * area / 100.0))

    def place(margin: float):
        xy = np.array([rng.uniform(_X0, length), rng.uniform(-width / 2, width / 2)])
        ok = far_from(xy, [(c, r + margin) for c, r in keep_out])
        return xy, ok

    for _ in range(n_trees):
        xy, ok = place(0.0)
        if ok:
            _tree(mb, rng, np.array([xy[0], xy[1], float(terrain(*xy))]))
    for _ in range(int(round(n_trees * 0.4)) + 3):
        xy, ok = place(-1.0)
        rad = rng.uniform(0.35, 1.0, 3) * np.array([1.0, 1.0, 0.7])
        if ok:
            mb.ellipsoid((xy[0], xy[1], float(terrain(*xy)) + rad[2] * 0.5), rad, Material.FOLIAGE,
                         subdiv=1, rng=rng, roughness=0.3)
    for _ in range(int(round(n_trees * 0.05)) + 1):
        xy, ok = place(0.0)
        a = rng.uniform(0, 2 * np.pi)
        half = rng.uniform(1.0, 2.5) * np.array([np.cos(a), np.sin(a)])
        r = rng.uniform(0.12, 0.3)
        if ok:
            p0, p1 = xy - half, xy + half
            mb.frustum((*p0, float(terrain(*p0)) + r * 0.7), (*p1, float(terrain(*p1)) + r * 0.7), r, r * 0.8,
                       Material.BARK, segments=8)
    n_back = add_backdrop(mb, xs, ys, terrain, Material.GROUND)
    v, t, m = mb.build()
    return World(v, t, m, start=start, goal=goal, spec=spec, nthreads=nthreads, ground_height=terrain,
                 backdrop_triangles=n_back)
