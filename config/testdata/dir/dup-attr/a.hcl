log_level = "info"

worker {}

plugin "store-bolt" {}
