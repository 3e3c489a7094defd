# IPv6 literals, and null meaning "use the default".
bind_addr = "[::1]:7420"
log_level = null

manager {
  heartbeat_ttl = null
}

worker {
  labels = null
}

plugin "network-wireguard" {
  path = null
  args = []
  env  = {}
}
