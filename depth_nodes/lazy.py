"""Lazy package exports (PEP 562): ``from depth_nodes.sim import World`` works, but
importing the package alone (as the CLI parser does) loads none of the heavy modules."""
from __future__ import annotations

import importlib


def lazy_exports(package: str, exports: dict[str, str]):
    """(__getattr__, __dir__, __all__) for a package whose names live in submodules.

    ``exports`` maps an exported name to the submodule (relative to ``package``) defining it.
    """

    def __getattr__(name: str):
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    def __dir__():
        return sorted(exports)

    return __getattr__, __dir__, sorted(exports)
