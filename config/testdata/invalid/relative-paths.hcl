data_dir   = "data"
api_socket = "warren.sock"
plugin_dir = "./bin/plugins"

worker {}

plugin "runtime-containerd" {
  path = "bin/plugins/runtime-containerd"
}
