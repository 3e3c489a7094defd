log_level = "INFO"

worker {}
