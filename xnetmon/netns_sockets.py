"""Sockets inside another network namespace, for a process that lives in the root one.

A socket belongs to the namespace of the thread that created it, for its whole life. So a
short-lived thread joins the namespace (setns(2); Python 3.11's os module has no setns),
creates and binds the socket, and ends; the socket then serves from any thread. This lets
the all-in-one monitor answer agents inside the lab while it runs on the host.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import socket
import threading
from pathlib import Path

_CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def enter_namespace(namespace: str) -> None:
    """Move the calling thread into `namespace` (ip netns name): every socket it opens from
    now on lives there. Only for a thread that does nothing else afterwards."""
    with open(NETNS_DIR / namespace, "rb") as ns:
        _setns(ns.fileno())


def listening_socket_in(namespace: str, address: str, port: int, backlog: int = 128) -> socket.socket:
    """A TCP socket bound to [address]:port and listening, inside `namespace` (ip netns name)."""
    result: dict[str, object] = {}

    def create() -> None:
        try:
            enter_namespace(namespace)
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((address, port))
                sock.listen(backlog)
            except BaseException:
                sock.close()
                raise
            result["socket"] = sock
        except BaseException as exc:  # handed to the caller's thread
            result["error"] = exc

    # The thread that joined the namespace must not serve anything else afterwards: it ends.
    thread = threading.Thread(target=create, name=f"netns-{namespace}")
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    return result["socket"]  # type: ignore[return-value]
