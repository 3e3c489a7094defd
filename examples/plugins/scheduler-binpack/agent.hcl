# agent.hcl: a manager that places tasks with the scheduler-binpack example
# plugin instead of the built-in round-robin scheduler. Build and install the
# plugin first:
#
#   go build -o /opt/warren/plugins/scheduler-binpack ./examples/plugins/scheduler-binpack
#
# then start the agent with
#
#   warren agent -config examples/plugins/scheduler-binpack/agent.hcl
#
# and check that the plugin runs with `warren plugin ls`. See
# docs/plugin-guide.md for the whole story and docs/config.md for every
# attribute.
#
# A manager and worker in one agent: the manager's scheduling loop sends the
# plugin every batch of tasks waiting for a node, and the worker runs them.

data_dir   = "/var/lib/warren"
api_socket = "/run/warren/warren.sock"

# Plugins named below without a `path` of their own (here store-bolt) run as
# <plugin_dir>/<name>. Unset, plugin_dir is the `plugins` folder next to the
# warren binary, where `make build` puts the built-in plugins.
# plugin_dir = "/usr/local/lib/warren/plugins"

manager {
  store     = "store-bolt"
  scheduler = "scheduler-binpack" # the label of the plugin block below
}

worker {}

plugin "scheduler-binpack" {
  # Absolute path of the binary; without it the agent runs
  # <plugin_dir>/scheduler-binpack.
  path = "/opt/warren/plugins/scheduler-binpack"

  # Checked against the schema the plugin reports (ConfigSchema) when the
  # agent starts it; mistakes are reported with file:line,col and the agent
  # does not start.
  config {
    # The most tasks a node may hold, counting the ones it runs already.
    # 0 or unset: no limit.
    max_tasks_per_node = 20
  }
}
