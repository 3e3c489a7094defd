# agent.hcl: a manager and worker whose tasks are placed by the
# scheduler-spread example plugin, spreading every service over the values of
# the node label "zone". Build and install the plugin first:
#
#   go build -o /opt/warren/plugins/scheduler-spread ./examples/plugins/scheduler-spread
#
# then start the agent with
#
#   warren agent -config examples/plugins/scheduler-spread/agent.hcl
#
# and check that the plugin runs with `warren plugin ls`. docs/config.md
# describes every attribute; docs/plugin-guide.md how plugins are built.

data_dir   = "/var/lib/warren"
api_socket = "/run/warren/warren.sock"

manager {
  store     = "store-bolt"
  scheduler = "scheduler-spread" # the label of the plugin block below
}

worker {
  labels = { zone = "a" }
}

plugin "scheduler-spread" {
  path = "/opt/warren/plugins/scheduler-spread"

  config {
    # The node label whose values tasks are spread over. Nodes without it
    # form one more group of their own.
    label = "zone"
  }
}
