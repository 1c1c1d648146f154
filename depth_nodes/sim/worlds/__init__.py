"""Procedural world generators, one module per kind; each exposes ``build(spec, nthreads) -> World``."""
from __future__ import annotations

from depth_nodes.sim.worlds import forest, indoor, urban

BUILDERS = {"forest": forest.build, "urban": urban.build, "indoor": indoor.build}
