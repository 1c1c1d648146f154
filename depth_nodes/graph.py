"""The node graph of `mav_nav`: one description read by the ROS 2 launch file
(launch/mav_nav.launch.py) and by `depth-nodes launch` (separate processes
without the `launch` package). Pure data, no ROS imports.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

#: Launch arguments: name -> (default, description, allowed values or None).
LAUNCH_ARGS: dict[str, tuple[str, str, tuple[str, ...] | None]] = {
    "use_sim": ("true", "Run the live simulator (sim_node) and use simulated time.", ("true", "false")),
    "mode": ("mono", "Depth source: mono (camera + radar network) or stereo.", ("mono", "stereo")),
    "stereo_backend": ("network", "Stereo matcher when mode:=stereo: network, sgbm (OpenCV) or hybrid (SGBM, "
                       "its holes filled by the network).", ("network", "sgbm", "hybrid")),
    "world": ("forest", "Simulated world type when use_sim:=true.", ("forest", "urban", "indoor")),
    "seed": ("7", "Simulated world seed when use_sim:=true.", None),
    "density": ("medium", "Simulated obstacle density when use_sim:=true.", ("sparse", "medium", "dense")),
    "extent": ("", "Simulated world size LENGTHxWIDTH in metres (e.g. 14x8); empty = the world's default.", None),
    "lockstep": ("true", "Simulator waits for the planner after each camera frame (false: real time).",
                 ("true", "false")),
    "depth_source": ("estimate", "Planner depth input: estimate (the depth node of `mode`) or gt (the "
                     "simulator's ground_truth/depth; starts no depth node, needs use_sim:=true or a "
                     "simulated bag:=...).",
                     ("estimate", "gt")),
    "bag": ("", "rosbag2 to replay into the graph (bag_player publishes its /clock; every node then runs "
            "on simulated time). Needs use_sim:=false. Empty: no replay.", None),
    "bag_rate": ("1.0", "Playback speed factor of bag:=... (bag_player's rate).", None),
    "bag_topics": ("", "Comma-separated bag topics to replay; empty = every topic of the bag.", None),
    "namespace": ("", "Namespace for every node (e.g. drone1).", None),
    "config": ("", "Parameter file; empty means the package's config/mav_nav.yaml.", None),
    "rviz": ("false", "Start RViz with rviz/mav_nav.rviz (needs a ROS 2 install).", ("true", "false")),
}


#: Every node executable of the package (console scripts; ``depth_nodes/ros/<name>.py``
#: defines ``NODE_NAME``, ``PARAMS`` and ``main``). setup.py lists the same names.
NODE_EXECUTABLES = ("sim_node", "mono_depth_node", "stereo_depth_node", "tsdf_mapper_node",
                    "primitive_planner_node", "bag_player", "bag_recorder")


@dataclass(frozen=True)
class NodeSpec:
    """One process of the graph."""

    name: str                       # process label (its nodes name themselves; see NODE_PARAMS)
    executable: str                 # console script (ros2 run depth_nodes <executable>)
    parameters: dict = field(default_factory=dict)      # overrides on top of the config file
    remappings: tuple[tuple[str, str], ...] = ()
    package: str = "depth_nodes"


#: primitive_planner_node no_return_free_m with the stereo network or hybrid (m; as eval flight uses).
STEREO_NETWORK_NO_RETURN_FREE_M = 10.0
#: Wall seconds the mono depth node holds an image for its radar scan under the lockstep simulator
#: (which waits anyway; the scan normally arrives within milliseconds, but a starved process runs
#: the release timer before the scan's callback).
LOCKSTEP_RADAR_WAIT_S = 2.0

#: depth_source:=gt: the mapper and planner read the simulator's ground-truth depth
#: (same camera, so the colour camera's info describes it).
GT_DEPTH_REMAPPINGS = (("depth/image", "ground_truth/depth"), ("depth/camera_info", "camera/camera_info"))


def parse_launch_args(overrides: dict[str, str] | None = None) -> dict[str, str]:
    """Defaults of LAUNCH_ARGS updated with ``overrides``; unknown names and values are errors."""
    args = {k: v[0] for k, v in LAUNCH_ARGS.items()}
    for key, value in (overrides or {}).items():
        if key not in LAUNCH_ARGS:
            raise ValueError(f"unknown launch argument {key!r}; known: {sorted(LAUNCH_ARGS)}")
        allowed = LAUNCH_ARGS[key][2]
        if allowed is not None and value not in allowed:
            raise ValueError(f"launch argument {key}:={value!r} must be one of {list(allowed)}")
        args[key] = value
    if not args["seed"].lstrip("-").isdigit():
        raise ValueError(f"launch argument seed:={args['seed']!r} must be an integer")
    parse_extent(args["extent"])
    if args["depth_source"] == "gt" and args["use_sim"] != "true" and not args["bag"]:
        raise ValueError("launch argument depth_source:=gt needs use_sim:=true or a simulated bag:=... "
                         "(ground truth comes from the simulator)")
    if args["bag"] and args["use_sim"] == "true":
        raise ValueError("launch argument bag:=... needs use_sim:=false (the bag, not sim_node, owns /clock)")
    try:
        rate = float(args["bag_rate"])
    except ValueError:
        rate = float("nan")
    if not 0.01 <= rate <= 100.0:
        raise ValueError(f"launch argument bag_rate:={args['bag_rate']!r} must be a number in [0.01, 100]")
    return args


def uses_sim_time(args: dict[str, str]) -> bool:
    """Whether the nodes follow /clock: from the live simulator or from a replayed bag."""
    return args["use_sim"] == "true" or bool(args["bag"])


def parse_extent(text: str) -> list[float]:
    """``'14x8'`` -> [14.0, 8.0]; ``''`` -> [0.0, 0.0] (the world kind's default size)."""
    if not text:
        return [0.0, 0.0]
    parts = text.lower().split("x")
    try:
        values = [float(v) for v in parts]
    except ValueError:
        values = []
    if len(values) != 2 or not all(v > 0 for v in values):
        raise ValueError(f"launch argument extent:={text!r} must look like LENGTHxWIDTH in metres, e.g. 14x8")
    return values


def default_config_path() -> Path:
    """config/mav_nav.yaml of the source tree or of the installed share directory."""
    return share_file("config/mav_nav.yaml")


def build_graph(args: dict[str, str]) -> list[NodeSpec]:
    """The nodes to start for the given (parsed) launch arguments."""
    use_sim = args["use_sim"] == "true"
    lockstep_sim = use_sim and args["lockstep"] == "true"
    common = {"use_sim_time": uses_sim_time(args)}
    nodes: list[NodeSpec] = []
    if args["bag"]:
        nodes.append(NodeSpec("bag_player", "bag_player", {
            "bag": args["bag"], "rate": float(args["bag_rate"]), "topics": args["bag_topics"]}))
    if use_sim:
        nodes.append(NodeSpec("sim_node", "sim_node", {
            **common, "world": args["world"], "seed": int(args["seed"]), "density": args["density"],
            "extent_m": parse_extent(args["extent"]), "lockstep": args["lockstep"] == "true"}))
    remappings: tuple[tuple[str, str], ...] = ()
    if args["depth_source"] == "gt":
        remappings = GT_DEPTH_REMAPPINGS
    elif args["mode"] == "mono":
        mono = dict(common)
        if lockstep_sim:
            mono["radar_wait_s"] = LOCKSTEP_RADAR_WAIT_S  # each image with its own scan, in any arrival order
        nodes.append(NodeSpec("mono_depth_node", "mono_depth_node", mono))
    else:
        nodes.append(NodeSpec("stereo_depth_node", "stereo_depth_node",
                              {**common, "backend": args["stereo_backend"]}))
    # One process hosts the mapper and the planner (nodes tsdf_mapper_node and
    # primitive_planner_node) sharing one TSDF: see README "Why the mapper and
    # planner share a process".
    planner = dict(common)
    if args["depth_source"] == "estimate" and args["mode"] == "stereo" and args["stereo_backend"] != "sgbm":
        # the stereo network's NaN pixels (the hybrid's too: it fills SGBM's holes with the network)
        # are disparities below its minimum: free space that far at least
        planner["no_return_free_m"] = STEREO_NETWORK_NO_RETURN_FREE_M
    if lockstep_sim:
        # the lockstep flight repeats exactly when the planner plans on a map holding each frame and
        # the mapper and planner take each frame's pose from odometry of its own stamp, never the
        # sample before it (which one has arrived depends on timing)
        planner["trigger"] = "map"
        planner["pose_max_extrapolation_s"] = 0.0
    nodes.append(NodeSpec("primitive_planner_node", "primitive_planner_node", planner, remappings))
    return nodes


def ros_args(spec: NodeSpec, config: Path, namespace: str = "") -> list[str]:
    """Command-line ``--ros-args`` equivalent of a launch_ros Node action."""
    # no __node remap: it would rename every node of a composed process
    out = ["--ros-args"]
    if namespace:
        out += ["-r", f"__ns:=/{namespace.strip('/')}"]
    out += ["--params-file", str(config)]
    for key, value in spec.parameters.items():
        if isinstance(value, bool):
            text = str(value).lower()
        elif isinstance(value, (list, tuple)):
            text = "[" + ",".join(str(v) for v in value) + "]"
        else:
            text = str(value)
        out += ["-p", f"{key}:={text}"]
    for src, dst in spec.remappings:
        out += ["-r", f"{src}:={dst}"]
    return out


def share_file(relative: str) -> Path:
    """A file shipped in the package share directory (source tree or colcon install)."""
    here = Path(__file__).resolve().parent
    candidates = [here.parent / relative]
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory("depth_nodes")) / relative)
    except Exception:  # noqa: BLE001 - ament index absent or package not installed
        pass
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(f"{relative} not found (looked in {[str(c) for c in candidates]})")
