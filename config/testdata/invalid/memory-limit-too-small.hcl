memory_limit = 1048576

manager {}
