"""depth_nodes.planning layer (see DESIGN layers in README)."""
