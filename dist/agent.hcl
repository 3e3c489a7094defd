# Warren agent configuration, installed by `make install` as
# @SYSCONFDIR@/warren/agent.hcl (it never overwrites an existing one).
# Reference: docs/config.md. Check changes before a restart with
#   warren agent -config @SYSCONFDIR@/warren/agent.hcl -check
# The agent reads this file only when it starts: apply a change with
#   systemctl restart warren

data_dir   = "/var/lib/warren"
api_socket = "/run/warren/warren.sock"
# Where `make install` put the plugins (the default, a plugins/ folder next
# to the warren binary, does not hold them once installed).
plugin_dir = "@PLUGINDIR@"
log_level  = "info"

# The cluster port. Give managers an address the other machines reach, e.g.
# bind_addr = "10.0.0.10:7420".
bind_addr = "127.0.0.1:7420"

# This machine as a single-node cluster: a manager (it bootstraps the cluster
# on its first start) and a worker (it runs containers).
manager {}

worker {
  # Tasks get an address on the cluster's WireGuard overlay and find
  # services by name (the default network plugin; open UDP 51820 between
  # the nodes). "none" gives them loopback only.
  # network = "network-wireguard"
}

# To join an existing cluster instead, keep only the role this machine has
# and add the token from `warren cluster join-token worker|manager`:
# join {
#   addresses = ["10.0.0.10:7420"]
#   token     = "WRN-1-..."
# }
