"""depth_nodes.mapping layer (see DESIGN layers in README)."""
