"""The agent's own resource use, read from the kernel: CPU time and UDP socket drops."""

from __future__ import annotations

import os
import resource
from pathlib import Path


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _own_socket_inodes() -> set[str]:
    inodes = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def udp_socket_drops() -> int:
    """Datagrams the kernel dropped on this process's UDP sockets (full receive buffers):
    the `drops` column of /proc/net/udp and udp6, for our sockets' inodes."""
    inodes = _own_socket_inodes()
    drops = 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) >= 13 and fields[9] in inodes:
                drops += int(fields[-1])
    return drops
