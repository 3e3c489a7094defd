# Agent-wide settings.
data_dir  = "/srv/warren"
node_name = "merged-node"
