"""ROS 2 boundary: message conversions and thin rclpy nodes.

This is the only layer that imports rclpy and message packages.
"""
