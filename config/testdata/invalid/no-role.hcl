# An agent must be a manager, a worker or both.
data_dir  = "/var/lib/warren"
log_level = "debug"
