"""config/mav_nav.yaml equals the nodes' declarations; setup.py installs every node."""
from __future__ import annotations

import ast
from pathlib import Path

import yaml

from depth_nodes.graph import NODE_EXECUTABLES
from depth_nodes.ros.config_file import config_path, node_declarations, render

ROOT = Path(__file__).resolve().parents[1]


def test_config_file_is_generated_from_declarations():
    expected = render(node_declarations())
    assert config_path().read_text() == expected, (
        "config/mav_nav.yaml is stale: run `python -m depth_nodes.ros.config_file --write`")


def test_config_values_equal_declared_defaults():
    loaded = yaml.safe_load(config_path().read_text()) or {}
    for node, params in node_declarations().items():
        values = loaded[node]["ros__parameters"]
        assert values == {p.name: p.default for p in params}, node


def test_setup_py_installs_every_node_executable():
    tree = ast.parse((ROOT / "setup.py").read_text())
    nodes = next(n.value for n in ast.walk(tree)
                 if isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "NODES" for t in n.targets))
    assert tuple(ast.literal_eval(nodes)) == NODE_EXECUTABLES
