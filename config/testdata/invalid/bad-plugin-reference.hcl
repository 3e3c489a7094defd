manager {
  store     = "Store-Bolt"
  scheduler = "scheduler_roundrobin"
}

worker {
  runtime = "runtime containerd"
  network = "net.work"
}
