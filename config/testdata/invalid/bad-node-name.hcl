node_name = "Web_01"

worker {}
