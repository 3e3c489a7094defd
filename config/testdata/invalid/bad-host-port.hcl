bind_addr = "localhost"
advertise = "10.0.0.5:99999"

worker {}
