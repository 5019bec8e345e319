"""A small AF_PACKET capture for tests (one interface inside a network namespace, in a thread),
sockets made inside a namespace, and a wait until a capturing process has read all it captured.

Every Ethernet frame carrying IPv6 or IPv4 that crosses the interface in the chosen
direction is handed to `handler(ts_ns, frame, offset)` with the kernel's receive timestamp
(SO_TIMESTAMPNS), the same clock for every capture on the host. `stop()` returns the
kernel's count of frames the socket dropped, so a test can insist that nothing was missed.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from lab import netns
from tests.support import DEADLINE_S, wait_until
from xnetmon.netns_sockets import NETNS_DIR, _setns

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SOL_PACKET = 263
PACKET_STATISTICS = 6
SO_TIMESTAMPNS = 35
IP_ETHERTYPES = (b"\x86\xdd", b"\x08\x00")
ETHERNET_HEADER_LEN = 14

T = TypeVar("T")


def created_in(namespace: str, create: Callable[[], T]) -> T:
    """What `create()` returns when run by a thread inside `namespace`: a socket made there
    stays in that namespace for its whole life, whichever thread uses it later."""
    result: dict[str, object] = {}

    def run() -> None:
        try:
            with open(NETNS_DIR / namespace, "rb") as ns:
                _setns(ns.fileno())
            result["value"] = create()
        except BaseException as exc:  # handed to the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=run)  # it ends, so it never serves anything else in there
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    return result["value"]  # type: ignore[return-value]


def _packet_socket(interface: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.bind((interface, ETH_P_ALL))
    return sock


class Capture:
    """Frames of one direction ("in", "out" or "both") on an interface, until `stop()`."""

    def __init__(
        self, namespace: str, interface: str, direction: str, handler: Callable[[int, bytes, int], None]
    ) -> None:
        self._socket = created_in(namespace, lambda: _packet_socket(interface))
        self._socket.settimeout(0.1)
        self._direction = direction
        self._handler = handler
        self._stopping = threading.Event()
        self.frames = 0
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            try:
                frame, ancillary, _, address = self._socket.recvmsg(65535, 64)
            except TimeoutError:
                if self._stopping.is_set():  # the queue is empty and we were asked to stop
                    return
                continue
            outgoing = address[2] == PACKET_OUTGOING
            if (self._direction == "in" and outgoing) or (self._direction == "out" and not outgoing):
                continue
            if frame[12:14] not in IP_ETHERTYPES:
                continue
            seconds, nanoseconds = next(
                struct.unpack("qq", data[:16])
                for level, kind, data in ancillary
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS
            )
            self.frames += 1
            self._handler(seconds * 1_000_000_000 + nanoseconds, frame, ETHERNET_HEADER_LEN)

    def stop(self) -> int:
        """Read what the socket still holds, stop, and return the frames the kernel dropped."""
        self._stopping.set()
        self._thread.join()
        _, dropped = struct.unpack("II", self._socket.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        self._socket.close()
        return dropped


def wait_until_drained(pid: int, timeout: float = DEADLINE_S) -> None:
    """Until process `pid` has read every frame queued on its packet sockets and waits in
    poll() for more: a capture stopped then has counted all that crossed before."""

    def sockets() -> set[str]:
        inodes = set()
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        return inodes

    def drained() -> bool:
        mine = sockets()
        rows = [line.split() for line in Path(f"/proc/{pid}/net/packet").read_text().splitlines()[1:]]
        queued = sum(int(row[6]) for row in rows if row[8] in mine)  # Rmem, by Inode
        return queued == 0 and netns.state(pid) == "S" and "poll" in Path(f"/proc/{pid}/wchan").read_text()

    wait_until(drained, timeout, what=f"process {pid} reading all it captured")
