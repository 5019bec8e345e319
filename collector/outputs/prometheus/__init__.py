"""Every Prometheus renderer of the agent: probe paths, flows, passive meters; each a custom Collector
over a snapshot."""
