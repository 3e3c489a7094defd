worker {}

plugin "runtime-containerd" {
  args = ["--debug"]
}

plugin "runtime-containerd" {
  path = "/opt/runtime-containerd"
}
