log_level = "debug"

plugin "store-bolt" {}
