"""Security rules of issue #9 checked on the code: nothing unpickles, message dimensions are bounded
before any allocation, file paths from parameters are validated."""
from __future__ import annotations

import ast
import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from depth_nodes.codec import cloud_to_xyz, depth_to_metres, image_to_array

PACKAGE = Path(__file__).resolve().parents[1] / "depth_nodes"


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
            yield owner, node.func.attr, node


def test_nothing_loads_pickle():
    offences = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            offences += [f"{path}:{node.lineno} imports {n}" for n in names
                         if n.split(".")[0] in ("pickle", "cPickle", "dill", "joblib", "marshal")]
        for owner, attr, call in _calls(tree):
            where = f"{path.relative_to(PACKAGE)}:{call.lineno}"
            if owner in ("np", "numpy") and attr == "load":
                kw = {k.arg: k.value for k in call.keywords}
                if not (isinstance(kw.get("allow_pickle"), ast.Constant) and kw["allow_pickle"].value is False):
                    offences.append(f"{where} np.load without allow_pickle=False")
            if owner == "torch" and attr == "load":
                offences.append(f"{where} torch.load (weights are safetensors)")
            if owner == "yaml" and attr in ("load", "unsafe_load", "full_load"):
                offences.append(f"{where} yaml.{attr} (use safe_load)")
    assert not offences, offences


@pytest.mark.parametrize("decode, msg", [
    (image_to_array, SimpleNamespace(height=2**31, width=2**31, step=2**32 - 1, encoding="rgb8", is_bigendian=0,
                                     data=b"\0" * 64)),
    (image_to_array, SimpleNamespace(height=4000, width=4000, step=12000, encoding="rgb8", is_bigendian=0,
                                     data=b"\0" * 64)),
    (depth_to_metres, SimpleNamespace(height=1200, width=1600, step=6400, encoding="32FC1", is_bigendian=0,
                                      data=b"\0" * 76800)),
    (cloud_to_xyz, SimpleNamespace(height=1, width=2**31, point_step=12, row_step=12 * 2**31, is_bigendian=False,
                                   is_dense=True, data=b"\0" * 120, fields=[
                                       SimpleNamespace(name=c, offset=4 * i, datatype=7, count=1)
                                       for i, c in enumerate("xyz")])),
])
def test_oversized_headers_are_refused_before_allocating(decode, msg):
    tracemalloc.start()
    try:
        with pytest.raises(ValueError):
            decode(msg)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, f"{peak} bytes allocated before refusing a header that claims more than its data"


def test_parameter_paths_are_validated(tmp_path):
    from depth_nodes.mapping.mapper import check_map_path
    from depth_nodes.ros.depth_node_base import resolve_weights

    assert check_map_path(tmp_path / "m.npz") == tmp_path / "m.npz"
    for bad in ("", "map.pkl", str(tmp_path / "missing_dir" / "m.npz"), "m\n.npz", str(tmp_path)):
        with pytest.raises(ValueError):
            check_map_path(bad)
    for bad in ("weights.pt", "weights.pth", str(tmp_path / "none.safetensors"), "random-init"):
        with pytest.raises(ValueError):
            resolve_weights(bad, allow_random=False)
    assert resolve_weights("", allow_random=False) is None
