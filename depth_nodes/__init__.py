"""depth_nodes: depth perception, TSDF mapping and motion-primitive planning for MAVs.

Layers (dependencies point downward only)::

    ros/        thin rclpy nodes (the only layer that imports rclpy and messages)
    eval/       metrics, replay evaluation, benchmarks, reports
    sim/        procedural worlds, sensor rendering, vehicle, bag writing
    depth/      depth networks, runtimes, SGBM, radar encoding
    mapping/    TSDF map on Open3D
    planning/   motion primitives, collision checking, selection
    camera.py, geometry.py: shared math
"""

__version__ = "0.1.0"
