worker {
  network = "none"
}
