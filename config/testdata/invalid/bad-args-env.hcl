worker {}

plugin "runtime-containerd" {
  args = "--debug"
  env  = { "A=B" = "x", PATH = null }
}

plugin "network-wireguard" {
  args = ["--mtu", null, ["1420"]]
  env  = ["A=B"]
}
