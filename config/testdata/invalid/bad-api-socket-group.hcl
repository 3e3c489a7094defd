api_socket_group = "1warren"

worker {}
