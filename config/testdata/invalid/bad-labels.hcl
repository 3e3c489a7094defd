worker {
  labels = {
    zone          = "edge-1"
    "rack number" = "7"
    gpu           = ["a100"]
    zone          = "edge-2"
    ""            = "empty"
    description   = "a label value that is much longer than the sixty-three characters allowed"
  }
}
