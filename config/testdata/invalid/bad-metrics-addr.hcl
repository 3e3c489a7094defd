metrics_addr = "localhost"

worker {}
