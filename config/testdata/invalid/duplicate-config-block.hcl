worker {}

plugin "network-wireguard" {
  config {
    mtu = 1420
  }
  config {
    mtu = 1380
  }
}
