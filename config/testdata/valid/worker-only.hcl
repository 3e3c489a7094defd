node_name = "edge-7"

worker {
  labels = {
    zone                 = "edge-1"
    "warren.io/arch"     = "arm64"
    "example.com/Tier_2" = ""
  }
}
