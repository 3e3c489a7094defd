plugin "runtime-containerd" {
  path = "/opt/containerd-plugin"
}
