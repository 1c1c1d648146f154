"""ament_python setup for depth_nodes (also installable with pip into a venv)."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "depth_nodes"

# Node executables: one console script per node, same name as the node module.
NODES = ["sim_node", "mono_depth_node", "stereo_depth_node", "tsdf_mapper_node",
         "primitive_planner_node", "bag_player", "bag_recorder"]

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    package_data={PACKAGE: ["depth/weights/*.safetensors", "depth/weights/*.json"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        (f"share/{PACKAGE}/rviz", glob("rviz/*.rviz")),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="depth_nodes maintainers",
    maintainer_email="maintainers@depth-nodes.invalid",
    description="Depth perception, TSDF mapping and motion-primitive planning for MAVs",
    license="Apache-2.0",
    python_requires=">=3.10",
    entry_points={
        "console_scripts": [
            "depth-nodes = depth_nodes.cli:main",
            *[f"{name} = {PACKAGE}.ros.{name}:main" for name in NODES],
        ],
    },
)
