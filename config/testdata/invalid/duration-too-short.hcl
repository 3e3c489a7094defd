manager {
  heartbeat_ttl     = "500ms"
  snapshot_interval = "-1m"
}

worker {
  heartbeat_interval = "50ms"
}
