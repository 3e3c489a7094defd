# An empty manager block: every manager setting takes its default.
manager {}
