"""Sub-commands of `xnetmon`, one module per command family."""
