# worker.hcl: a worker that runs tasks and joins managers elsewhere. Paths must
# be absolute. See docs/config.md for the full reference.

# Where the agent keeps its local state.
data_dir = "/var/lib/warren"

# Listen for cluster traffic on this node's private address. advertise
# defaults to bind_addr, which is fine since 10.0.1.21 is reachable.
bind_addr = "10.0.1.21:7420"

# Unix socket of the API on this machine.
api_socket = "/run/warren/warren.sock"

# trace, debug, info, warn or error.
log_level = "warn"

# Unique name of this node: lowercase letters, digits and '-', at most 63.
node_name = "edge-worker-21"

# The cluster to join on first start: one or more managers' advertise
# addresses, and the token `warren cluster join-token worker` prints on a
# manager. Once joined, the node's certificate in data_dir/certs is used and
# this block is not read again.
join {
  addresses = ["10.0.1.11:7420", "10.0.1.12:7420", "10.0.1.13:7420"]
  token     = "WRN-1-<CA digest>-<secret>"
}

# Being a worker: runs the tasks the managers schedule here. No manager block,
# so this agent takes no part in Raft.
worker {
  # Plugin running containers.
  runtime = "runtime-containerd"

  # Plugin connecting containers across nodes. Default "": none, each task
  # gets its own network namespace with only loopback. (The WireGuard mesh
  # plugin, network-wireguard, is not built yet.)
  # network = "network-wireguard"

  # Labels the scheduler can match on. Keys: 1 to 63 characters from letters,
  # digits and . _ / -; values: at most 63 characters.
  labels = {
    zone             = "edge-1"
    "warren.io/arch" = "arm64"
  }

  # How often to report to the managers; at least 100ms, and well under the
  # managers' heartbeat_ttl (10s by default).
  heartbeat_interval = "2s"
}

# A plugin installed outside plugin_dir.
plugin "runtime-containerd" {
  # Absolute path of the binary; default <plugin_dir>/runtime-containerd.
  path = "/opt/warren/plugins/runtime-containerd"

  # Extra command-line arguments, if the plugin takes any.
  args = []

  # Extra environment variables for the plugin process.
  env = { GOMAXPROCS = "1" }

  # Settings for the plugin itself. Which attributes are accepted is up to the
  # plugin (it reports a schema the agent checks this block against); this one
  # is left empty here.
  config {
  }
}
