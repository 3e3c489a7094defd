data_dri = "/var/lib/warren"

manager {
  heartbeat = "10s"
}
