"""Where an agent's results go: sinks to the analyzer, the on-disk spool, and Prometheus rendering."""
