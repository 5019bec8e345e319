"""Free ports for servers this process starts and names a port for before they bind it
(nats-server and its cluster routes here; Prometheus, reflectors, agents in the tests and
benchmarks).

"Bind port 0, read the port, close" is not enough for that: the kernel hands out the same
port again to a later ask (a three-node nats cluster asks for nine ports, and one cluster in
about 400 got a port twice), and a port of the ephemeral range can be taken by any outgoing
connection (a cluster node dialling its peers) before the server binds it. So ports come
from below the ephemeral range, walked from a random start, each handed out once per
process, and only if it can be bound now.
"""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

LOWEST = 10_000  # above the well-known and most registered service ports
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")

_lock = threading.Lock()
_handed_out: set[int] = set()
_next: int | None = None


def free_port(host: str = "::1", kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    """A port of `host` that `kind` (TCP or UDP) can bind now, never returned before by
    this process, outside the ephemeral range where that range leaves room below it."""
    global _next
    low, high = _walk_range()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with _lock:
        if _next is None or not low <= _next < high:
            _next = random.randrange(low, high)
        for _ in range(high - low):
            port, _next = _next, low + (_next + 1 - low) % (high - low)
            if port not in _handed_out and _bindable(family, host, port, kind):
                _handed_out.add(port)
                return port
    raise OSError(f"no free {kind.name} port on {host} between {low} and {high - 1}")


def _walk_range() -> tuple[int, int]:
    """[low, high) of the ports to hand out: below the ephemeral range's first port, or the
    whole of 1024-65535 where the ephemeral range leaves less than 1,000 below it."""
    try:
        first = int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        first = 32_768
    return (LOWEST, first) if first - LOWEST >= 1_000 else (1_024, 65_536)


def _bindable(family: socket.AddressFamily, host: str, port: int, kind: socket.SocketKind) -> bool:
    with socket.socket(family, kind) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True
