manager {
  overlay_range       = "10.88.0.0/24"
  overlay_node_prefix = 30
}
