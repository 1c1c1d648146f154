"""depth_nodes.depth layer (see DESIGN layers in README)."""
