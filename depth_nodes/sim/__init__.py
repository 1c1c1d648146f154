"""depth_nodes.sim layer (see DESIGN layers in README)."""
