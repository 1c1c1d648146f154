"""ros2 launch depth_nodes mav_nav.launch.py [use_sim:=true] [mode:=mono|stereo] [world:=forest] [rviz:=true]
    [depth_source:=estimate|gt] [density:=sparse] [extent:=14x8] [lockstep:=false] [bag:=DIR]

Perception and planning for a MAV: depth estimation (mono+radar or stereo), the
TSDF mapper and the motion-primitive planner; with use_sim:=true also the live
simulator on simulated time (depth_source:=gt feeds the planner the simulator's
ground-truth depth instead of a depth node); with bag:=DIR a bag_player replays a
recorded bag into the same nodes on the bag's clock. The node list, parameters and
remappings come from depth_nodes.graph, which `depth-nodes launch mav_nav` uses too.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from depth_nodes import graph


def _graph_actions(context):
    args = graph.parse_launch_args(
        {name: LaunchConfiguration(name).perform(context) for name in graph.LAUNCH_ARGS})
    config = args["config"] or str(graph.default_config_path())
    namespace = args["namespace"] or None
    actions = [
        Node(package=spec.package, executable=spec.executable, namespace=namespace,
             parameters=[config, spec.parameters], remappings=list(spec.remappings), output="screen")
        for spec in graph.build_graph(args)
    ]
    if args["rviz"] == "true":
        actions.append(Node(package="rviz2", executable="rviz2", name="rviz2", namespace=namespace,
                            arguments=["-d", str(graph.share_file("rviz/mav_nav.rviz"))],
                            parameters=[{"use_sim_time": graph.uses_sim_time(args)}], output="screen"))
    return actions


def generate_launch_description():
    declared = [
        DeclareLaunchArgument(name, default_value=default, description=description,
                              **({"choices": list(choices)} if choices else {}))
        for name, (default, description, choices) in graph.LAUNCH_ARGS.items()
    ]
    return LaunchDescription([*declared, OpaqueFunction(function=_graph_actions)])
