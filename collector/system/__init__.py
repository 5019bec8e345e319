"""Operating-system plumbing: measurement sockets, batched datagram I/O, the host clock, the agent's own
resource use, crash-safe files."""
