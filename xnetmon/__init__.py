"""The `xnetmon` command: the one place that wires collector, analyzer and lab together."""
