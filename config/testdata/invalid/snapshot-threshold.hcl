manager {
  snapshot_threshold = 0
  trailing_logs      = -1
}
