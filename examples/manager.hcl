# manager.hcl: a manager that runs no tasks, one of the three or five managers
# of a cluster. Paths must be absolute. See docs/config.md for the full
# reference.

# Where the agent keeps the Raft log, snapshots and the store's data.
data_dir = "/var/lib/warren"

# Listen for cluster (Raft) traffic on every interface...
bind_addr = "0.0.0.0:7420"

# ...and tell the other nodes which address reaches this one. Required here,
# because nobody can dial 0.0.0.0.
advertise = "10.0.0.10:7420"

# Unix socket of the API, used by the warren CLI on this machine.
api_socket = "/run/warren/warren.sock"

# Where plugin binaries are found; unset means the `plugins` folder next to the
# warren binary.
plugin_dir = "/usr/local/lib/warren/plugins"

# trace, debug, info, warn or error.
log_level = "info"

# Unique name of this node: lowercase letters, digits and '-', at most 63.
# Defaults to the host name up to its first dot.
node_name = "manager-1"

# Being a manager: Raft member, cluster state, scheduling. No worker block, so
# this agent runs no tasks.
manager {
  # Plugin serving the cluster state store.
  store = "store-bolt"

  # Plugin choosing a worker for each task.
  scheduler = "scheduler-roundrobin"

  # Workers silent for this long are marked down and their tasks are replaced
  # on other nodes. Workers beat every ttl/5.
  # At least 1s.
  heartbeat_ttl = "10s"

  # Raft log entries between snapshots (at least 1)...
  snapshot_threshold = 8192

  # ...checked this often (at least 1s).
  snapshot_interval = "2m"

  # Raft log entries kept after a snapshot for lagging managers to catch up.
  trailing_logs = 10240
}

# Start the store plugin with an extra environment variable. path, args and env
# are all optional; path defaults to <plugin_dir>/<name>.
plugin "store-bolt" {
  env = { GOMAXPROCS = "2" }
}
