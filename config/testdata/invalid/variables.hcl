data_dir = var.data_dir

worker {
  heartbeat_interval = "${var.beat}s"
  runtime            = upper("runtime-containerd")
}
