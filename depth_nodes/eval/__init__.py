"""depth_nodes.eval layer (see DESIGN layers in README)."""
