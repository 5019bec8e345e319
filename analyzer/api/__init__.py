"""The analyzer's HTTP API: shipments in, verdicts, paths, topology and hints out."""
