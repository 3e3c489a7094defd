bind_addr = "0.0.0.0:7420"

manager {}
