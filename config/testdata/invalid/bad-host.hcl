bind_addr = ":7420"
advertise = "bad_host!:7420"

worker {}
