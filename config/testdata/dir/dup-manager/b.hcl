worker {}

manager {
  scheduler = "scheduler-roundrobin"
}
