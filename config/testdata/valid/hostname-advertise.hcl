bind_addr = "[::]:7420"
advertise = "node-3.cluster.internal:7420"

worker {
  runtime = "runtime-containerd"
}
