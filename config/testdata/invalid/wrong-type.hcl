data_dir = ["/var/lib/warren"]

manager {
  snapshot_threshold = "lots"
  trailing_logs      = 1.5
}

worker {
  labels = "zone=edge-1"
}
