"""Surface materials of simulated worlds (one id per triangle, used for texturing)."""
from __future__ import annotations

from enum import IntEnum


class Material(IntEnum):
    """Material id stored per triangle; ``MISS`` marks rays that hit nothing (sky)."""

    GROUND = 0
    BARK = 1
    FOLIAGE = 2
    BRICK = 3
    CONCRETE = 4
    METAL = 5
    WOOD = 6
    PLASTER = 7
    FLOOR = 8
    MISS = 255


#: Number of real (non-MISS) materials.
N_MATERIALS = 9
