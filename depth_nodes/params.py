"""Parameter schema of every node: one declaration, three consumers.

Each node module in ``depth_nodes/ros/`` defines ``PARAMS`` (a tuple of
:class:`Param`: name, default, description, range) and declares them through
``BaseNode``; ``config/mav_nav.yaml`` is generated from those declarations by
``python -m depth_nodes.ros.config_file --write`` (a test checks it is current), and the launcher and the
launch file pass that YAML to every node.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    description: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None

    def __post_init__(self):
        if not isinstance(self.default, (bool, int, float, str, list)):
            raise ValueError(f"parameter {self.name}: unsupported default type {type(self.default).__name__}")
        self.validate(self.default)

    def validate(self, value: Any) -> Any:
        """Return ``value`` if it is allowed for this parameter, else raise ValueError."""
        if isinstance(self.default, bool) != isinstance(value, bool):
            raise ValueError(f"parameter {self.name}: expected {type(self.default).__name__}, got {value!r}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if self.min is not None and value < self.min or self.max is not None and value > self.max:
                raise ValueError(f"parameter {self.name}={value} outside [{self.min}, {self.max}]")
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"parameter {self.name}={value!r} not one of {list(self.choices)}")
        return value


#: Parameters every depth_nodes node declares.
COMMON: tuple[Param, ...] = (
    Param("diagnostics_period_s", 1.0, "Period of the diagnostics publication (seconds).", 0.1, 60.0),
    Param("reject_log_period_s", 1.0, "At most one log line per topic per this many seconds for rejected input.",
          0.0, 60.0),
    Param("max_image_side", 4096, "Largest accepted image width or height (pixels); larger headers are rejected.",
          16, 8192),
)

def with_common(params: tuple[Param, ...]) -> tuple[Param, ...]:
    """COMMON plus a node's own parameters; duplicate names are an error."""
    out = COMMON + tuple(params)
    names = [p.name for p in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"parameters declared twice: {dup}")
    return out


def defaults(params: tuple[Param, ...]) -> dict[str, Any]:
    return {p.name: p.default for p in params}
