manager {
  heartbeat_ttl = "20s"
}

worker {
  labels = { zone = "edge-1" }
}

plugin "store-bolt" {}
