"""Operating the server: load shedding for agents, Prometheus metrics, JSON logs with request ids."""
