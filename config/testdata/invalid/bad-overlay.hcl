manager {
  overlay_range       = "10.88.1.0/16"
  overlay_node_prefix = 24
  cluster_domain      = "Warren.Local"
}
