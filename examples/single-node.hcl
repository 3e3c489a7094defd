# single-node.hcl: one machine that is both a manager and a worker, using the
# built-in plugins. Start it with:
#
#   warren agent -config examples/single-node.hcl
#
# Every attribute below is set to its default, so the file documents the
# defaults too; delete any line you do not need to change. Paths must be
# absolute. See docs/config.md for the full reference.

# Where the agent keeps its state: the Raft log and snapshots, and the store
# plugin's data. Must be an absolute path.
data_dir = "/var/lib/warren"

# host:port the cluster (Raft) transport listens on. 127.0.0.1 keeps a single
# node private to this machine; use 0.0.0.0 or a real address to let other
# nodes join, and then set advertise.
bind_addr = "127.0.0.1:7420"

# host:port other nodes use to reach this one. Defaults to bind_addr; must be
# set when bind_addr listens on all interfaces (0.0.0.0 or ::).
# advertise = "10.0.0.10:7420"

# Unix socket the API (and the warren CLI) talks to. Must be an absolute path.
api_socket = "/run/warren/warren.sock"

# Directory holding the plugin binaries. By default, the `plugins` folder next
# to the warren binary (where `make build` puts them).
# plugin_dir = "/usr/local/lib/warren/plugins"

# One of trace, debug, info, warn, error.
log_level = "info"

# This node's name in the cluster: lowercase letters, digits and '-', at most
# 63 characters. Defaults to the host name, lowercased, up to its first dot.
# node_name = "node-1"

# The manager block makes this agent a manager: it takes part in Raft, keeps
# the cluster state and schedules work.
manager {
  # Plugin serving the cluster state store.
  store = "store-bolt"

  # Plugin deciding which worker runs each task.
  scheduler = "scheduler-roundrobin"

  # A worker with no heartbeat for this long is marked down and its tasks are
  # replaced on other nodes. Workers beat every ttl/5.
  # A Go duration, at least 1s.
  heartbeat_ttl = "10s"

  # Number of Raft log entries after which a snapshot is taken. At least 1.
  snapshot_threshold = 8192

  # How often Raft checks whether a snapshot is due. At least 1s.
  snapshot_interval = "2m"

  # Raft log entries kept after a snapshot, so that slightly lagging managers
  # can catch up without a full snapshot.
  trailing_logs = 10240
}

# The worker block makes this agent a worker: it runs the tasks scheduled to it.
worker {
  # Plugin running containers.
  runtime = "runtime-containerd"

  # Plugin connecting containers across nodes. Default "": none, each task
  # gets its own network namespace with only loopback. (The WireGuard mesh
  # plugin, network-wireguard, is not built yet.)
  # network = "network-wireguard"

  # Node labels the scheduler can match on. Keys are 1 to 63 characters from
  # letters, digits and . _ / -; values are at most 63 characters.
  labels = {}

  # How often this worker reports to the managers. At least 100ms; keep it well
  # under the managers' heartbeat_ttl.
  heartbeat_interval = "2s"
}

# A plugin block is needed only to change how a plugin is started; plugins that
# are named above but have no block run as <plugin_dir>/<name> with no extra
# arguments. For example:
#
# plugin "runtime-containerd" {
#   # Absolute path of the binary.
#   path = "/opt/warren/runtime-containerd"
#
#   # Extra command-line arguments and environment variables.
#   args = []
#   env  = { GOMAXPROCS = "2" }
#
#   # Settings for the plugin itself; the accepted attributes are the ones the
#   # plugin reports in its schema (see the plugin's documentation).
#   config {
#   }
# }
