worker {}

join {
  addresses = []
}
