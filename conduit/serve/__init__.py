"""`conduit serve`: the host's agent. A REST API, a live dashboard and a Prometheus exporter over one
observation of the host that a background thread keeps fresh; writes go through the one reconcile."""
