manager {
  heartbeat_ttl     = "ten seconds"
  snapshot_interval = "120"
}

worker {
  heartbeat_interval = 2
}
