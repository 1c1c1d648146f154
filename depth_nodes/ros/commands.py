"""CLI subcommands of the ROS layer (conversion benchmark; launch arrives with the node graph)."""
from __future__ import annotations


def register(groups) -> None:  # filled in by the conversions work
    pass
