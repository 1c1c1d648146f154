"""The graph description and `depth-nodes launch`: argument checking, commands, shutdown."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from depth_nodes import graph
from depth_nodes.launcher import Child, ProcessGroup, build_children, parse_assignments, write_config


def test_parse_assignments_and_errors():
    assert parse_assignments(["mode:=stereo", "seed:=3"]) == {"mode": "stereo", "seed": "3"}
    with pytest.raises(ValueError, match="name:=value"):
        parse_assignments(["mode=stereo"])
    with pytest.raises(ValueError, match="unknown launch argument"):
        graph.parse_launch_args({"modee": "mono"})
    with pytest.raises(ValueError, match="must be one of"):
        graph.parse_launch_args({"mode": "lidar"})
    with pytest.raises(ValueError, match="integer"):
        graph.parse_launch_args({"seed": "abc"})


def test_graph_follows_mode_and_sim():
    names = [n.name for n in graph.build_graph(graph.parse_launch_args({}))]
    assert names == ["sim_node", "mono_depth_node", "primitive_planner_node"]
    stereo = graph.build_graph(graph.parse_launch_args({"mode": "stereo", "use_sim": "false",
                                                        "stereo_backend": "sgbm"}))
    assert [n.name for n in stereo] == ["stereo_depth_node", "primitive_planner_node"]
    assert stereo[0].parameters == {"use_sim_time": False, "backend": "sgbm"}
    assert all(n.remappings == () for n in stereo)
    assert "no_return_free_m" not in stereo[1].parameters  # SGBM's holes are unknown, not free
    net = graph.build_graph(graph.parse_launch_args({"mode": "stereo"}))
    assert net[-1].parameters["no_return_free_m"] == graph.STEREO_NETWORK_NO_RETURN_FREE_M > 0
    hybrid = graph.build_graph(graph.parse_launch_args({"mode": "stereo", "stereo_backend": "hybrid"}))
    assert hybrid[1].parameters["backend"] == "hybrid"  # its holes are the network's: far, not unknown
    assert hybrid[-1].parameters["no_return_free_m"] == graph.STEREO_NETWORK_NO_RETURN_FREE_M


def test_depth_source_gt_remaps_the_planner_and_starts_no_depth_node():
    nodes = graph.build_graph(graph.parse_launch_args({"depth_source": "gt", "mode": "stereo"}))
    assert [n.name for n in nodes] == ["sim_node", "primitive_planner_node"]
    assert dict(nodes[1].remappings) == {"depth/image": "ground_truth/depth",
                                         "depth/camera_info": "camera/camera_info"}
    with pytest.raises(ValueError, match="depth_source:=gt needs use_sim:=true"):
        graph.parse_launch_args({"depth_source": "gt", "use_sim": "false"})


def test_bag_replay_adds_a_player_and_simulated_time():
    nodes = graph.build_graph(graph.parse_launch_args({"use_sim": "false", "bag": "/data/flight", "bag_rate": "0.5",
                                                        "bag_topics": "odom,camera/image_raw"}))
    assert [n.name for n in nodes] == ["bag_player", "mono_depth_node", "primitive_planner_node"]
    assert nodes[0].parameters == {"bag": "/data/flight", "rate": 0.5, "topics": "odom,camera/image_raw"}
    assert all(n.parameters.get("use_sim_time") is True for n in nodes[1:])  # the bag owns /clock
    # planning on a simulated bag's ground-truth depth
    gt = graph.build_graph(graph.parse_launch_args({"use_sim": "false", "bag": "b", "depth_source": "gt"}))
    assert [n.name for n in gt] == ["bag_player", "primitive_planner_node"]
    assert dict(gt[1].remappings)["depth/image"] == "ground_truth/depth"
    assert graph.uses_sim_time(graph.parse_launch_args({"use_sim": "false"})) is False
    with pytest.raises(ValueError, match="needs use_sim:=false"):
        graph.parse_launch_args({"bag": "b"})
    for bad in ("0", "fast", "1000"):
        with pytest.raises(ValueError, match="bag_rate"):
            graph.parse_launch_args({"use_sim": "false", "bag": "b", "bag_rate": bad})


def test_launch_ends_cleanly_when_the_bag_is_played():
    from depth_nodes.launcher import launch_exit_code

    assert launch_exit_code("child_exit", {"bag_player": 0}) == 0
    assert launch_exit_code("child_exit", {"bag_player": 1}) == 1
    assert launch_exit_code("child_exit", {"mono_depth_node": 0}) == 1  # a node died: an error
    assert launch_exit_code("signal", {}) == 0 and launch_exit_code("timeout", {}) == 0


def test_sim_world_arguments_reach_sim_node():
    sim = graph.build_graph(graph.parse_launch_args({"density": "sparse", "extent": "14x8", "lockstep": "false"}))[0]
    assert sim.parameters["density"] == "sparse" and sim.parameters["extent_m"] == [14.0, 8.0]
    assert sim.parameters["lockstep"] is False
    assert graph.build_graph(graph.parse_launch_args({}))[0].parameters["extent_m"] == [0.0, 0.0]
    for bad in ("14", "14x", "ax8", "14x-8", "14x8x2"):
        with pytest.raises(ValueError, match="extent"):
            graph.parse_launch_args({"extent": bad})
    with pytest.raises(ValueError, match="must be one of"):
        graph.parse_launch_args({"density": "crowded"})


@pytest.mark.parametrize("lockstep", ["true", "false"])
def test_lockstep_simulator_makes_the_graph_repeatable(lockstep):
    nodes = {s.name: s for s in graph.build_graph(graph.parse_launch_args({"use_sim": "true", "mode": "mono",
                                                                           "lockstep": lockstep}))}
    planner, mono = nodes["primitive_planner_node"].parameters, nodes["mono_depth_node"].parameters
    if lockstep == "true":  # plan on the map of each frame, poses of its own stamp, images with their own scan
        assert planner["trigger"] == "map" and planner["pose_max_extrapolation_s"] == 0.0
        assert mono["radar_wait_s"] == graph.LOCKSTEP_RADAR_WAIT_S > 0
    else:  # real time: the nodes' defaults (least latency)
        assert "trigger" not in planner and "pose_max_extrapolation_s" not in planner
        assert "radar_wait_s" not in mono
    real = {s.name: s for s in graph.build_graph(graph.parse_launch_args({"use_sim": "false", "mode": "mono"}))}
    assert "trigger" not in real["primitive_planner_node"].parameters


def test_ros_args_carry_name_namespace_params_and_remaps(tmp_path):
    spec = graph.NodeSpec("n", "n", {"use_sim_time": True, "rate": 5.0, "xy": [14.0, 8.0]}, (("image", "cam/image"),))
    argv = graph.ros_args(spec, tmp_path / "c.yaml", namespace="drone1")
    assert argv[0] == "--ros-args" and not any("__node" in a for a in argv)
    for frag in (["-r", "__ns:=/drone1"], ["-p", "use_sim_time:=true"], ["-p", "rate:=5.0"], ["-p", "xy:=[14.0,8.0]"],
                 ["-r", "image:=cam/image"], ["--params-file", str(tmp_path / "c.yaml")]):
        assert any(argv[k:k + 2] == frag for k in range(len(argv) - 1)), frag


def test_build_children_uses_config_file(tmp_path):
    cfg = tmp_path / "p.yaml"
    cfg.write_text("{}\n")
    children, args = build_children({"config": str(cfg), "mode": "stereo"})
    assert all(str(cfg) in c.argv for c in children)
    assert children[0].argv[1:3] == ["-m", "depth_nodes.ros.sim_node"]
    with pytest.raises(FileNotFoundError):
        build_children({"config": str(tmp_path / "missing.yaml")})


def test_write_config_overrides_parameters_of_the_shipped_file(tmp_path):
    import yaml

    out = write_config(tmp_path / "p.yaml", {"sim_node": {"image_width": 160, "publish_radar": False}})
    cfg = yaml.safe_load(out.read_text())
    assert cfg["sim_node"]["ros__parameters"]["image_width"] == 160
    assert cfg["sim_node"]["ros__parameters"]["publish_radar"] is False
    assert cfg["sim_node"]["ros__parameters"]["world"] == "forest"  # the rest is kept
    with pytest.raises(ValueError, match="no parameters"):
        write_config(tmp_path / "q.yaml", {"sim_node": {"image_widht": 160}})
    with pytest.raises(ValueError, match="not in"):
        write_config(tmp_path / "q.yaml", {"sim_nod": {}})


# Children touch argv[1] once their signal handlers are installed, so the test never
# signals a child that is still starting up.
SLEEPER = "import pathlib, signal, sys, time\n" \
          "signal.signal(signal.SIGINT, lambda *a: sys.exit(0))\n" \
          "pathlib.Path(sys.argv[1]).touch()\n" \
          "while True: time.sleep(0.05)\n"
STUBBORN = "import pathlib, signal, sys, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n" \
           "signal.signal(signal.SIGTERM, signal.SIG_IGN)\npathlib.Path(sys.argv[1]).touch()\n" \
           "while True: time.sleep(0.05)\n"


def _wait_ready(*paths, timeout_s=30.0):
    deadline = time.monotonic() + timeout_s
    while not all(p.exists() for p in paths):
        assert time.monotonic() < deadline, "child processes did not start"
        time.sleep(0.02)


def test_process_group_stops_everything_escalating(tmp_path):
    ready = (tmp_path / "polite", tmp_path / "stubborn")
    group = ProcessGroup([Child("polite", [sys.executable, "-c", SLEEPER, str(ready[0])]),
                          Child("stubborn", [sys.executable, "-c", STUBBORN, str(ready[1])])],
                         sigint_grace_s=1.0, sigterm_grace_s=0.5)
    group.start()
    _wait_ready(*ready)
    assert group.wait(timeout_s=0.2) == "timeout"
    codes = group.stop()
    assert codes["polite"] == 0
    assert codes["stubborn"] == -signal.SIGKILL


def test_process_group_ends_when_a_child_exits(tmp_path):
    ready = tmp_path / "long"
    # "short" exits as soon as "long" is up, which must bring the whole group down
    short = "import pathlib, sys, time\nwhile not pathlib.Path(sys.argv[1]).exists(): time.sleep(0.02)\n"
    group = ProcessGroup([Child("short", [sys.executable, "-c", short, str(ready)]),
                          Child("long", [sys.executable, "-c", SLEEPER, str(ready)])])
    group.start()
    assert group.wait(timeout_s=20) == "child_exit"
    assert group.stop()["long"] == 0


def test_cli_dry_run_prints_one_command_per_node(tmp_path):
    cfg = tmp_path / "p.yaml"
    cfg.write_text("{}\n")
    out = subprocess.run([sys.executable, "-m", "depth_nodes.cli", "launch", "mav_nav", f"config:={cfg}",
                          "namespace:=drone1", "--dry-run"], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout.strip().splitlines()
    assert len(out) == 3 and all("__ns:=/drone1" in line for line in out)


LAUNCH_FILE = Path(__file__).resolve().parents[1] / "launch" / "mav_nav.launch.py"


def test_launch_file_reads_the_shared_graph_description():
    """Without launch_ros we still check the file is valid Python built on depth_nodes.graph."""
    import ast

    tree = ast.parse(LAUNCH_FILE.read_text())
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    attrs = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    funcs = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in funcs
    assert {"build_graph", "parse_launch_args", "LAUNCH_ARGS"} <= attrs and "graph" in names


def test_launch_file_with_launch_ros():
    pytest.importorskip("launch_ros", reason="launch_ros is not installed (needs a ROS 2 install)")
    import importlib.util

    from launch import LaunchContext

    spec = importlib.util.spec_from_file_location("mav_nav_launch", LAUNCH_FILE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ld = mod.generate_launch_description()
    declared = {a.name for a in ld.entities if a.__class__.__name__ == "DeclareLaunchArgument"}
    assert declared == set(graph.LAUNCH_ARGS)
    ctx = LaunchContext()
    for a in ld.entities:
        a.visit(ctx)
    nodes = mod._graph_actions(ctx)
    assert len(nodes) == len(graph.build_graph(graph.parse_launch_args({})))
