# Every attribute set, none to its default.
data_dir   = "/srv/warren"
bind_addr  = "0.0.0.0:7421"
advertise  = "10.0.0.5:7421"
api_socket = "/tmp/warren-test/api.sock"
api_socket_group = "warren"
plugin_dir = "/opt/warren/plugins"
log_level  = "debug"
node_name  = "node-01"
metrics_addr = "127.0.0.1:9421"
memory_limit = 134217728

manager {
  store              = "store-etcd"
  scheduler          = "scheduler-binpack"
  heartbeat_ttl      = "15s"
  snapshot_threshold = 100
  snapshot_interval  = "1m30s"
  trailing_logs      = 0
  node_cert_ttl      = "720h"
  overlay_range       = "172.30.0.0/16"
  overlay_node_prefix = 26
  cluster_domain      = "edge"
}

worker {
  runtime            = "runtime-fake"
  network            = "network-host"
  labels             = { zone = "eu-west-1a", gpu = "true" }
  heartbeat_interval = "500ms"
  runtime_timeout    = "10s"
}

plugin "store-etcd" {
  path = "/usr/local/bin/warren-store-etcd"
  args = ["--verbose", "--cache", "64"]
  env  = { ETCD_ENDPOINTS = "http://10.0.0.9:2379", EMPTY = "" }

  # Not decoded by config: the plugin reports its own schema.
  config {
    endpoints = ["http://10.0.0.9:2379"]
    timeout   = "5s"
    tls {
      ca = "/etc/warren/ca.pem"
    }
  }
}

plugin "scheduler-binpack" {}

join {
  addresses = ["10.0.0.1:7420", "manager-2.example.com:7420"]
  token     = "WRN-1-0bfw1op2mu3318pksl6p3xjaut1yi776wgewzcqqpsqcnjir3d-d2f0shafj2wq57sutyjtm12i7"
}
