"""Operating-system plumbing and helpers every part shares: measurement sockets, batched
datagram I/O, the host clock, the agent's own resource use, crash-safe files, configuration
files, listen addresses."""
