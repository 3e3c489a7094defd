manager {
  overlay_node_prefix = 12
}
