"""Replies/s of UDP servers draining receive queues that were filled while they were stopped.

A closed-loop generator on a 2-core machine takes CPU from the servers it loads, so two
workers cannot be compared with one by packets/s under live load. Here the servers are
stopped (SIGSTOP), every worker's socket queue is filled with valid 44-octet STAMP
requests, the servers are continued, and the replies' kernel receive times (SO_TIMESTAMPNS)
give the time the drain took: nothing but the servers runs meanwhile, and the generator's
cost falls outside the measurement. A queue holds what its receive buffer holds (8 MiB,
about 10,000 requests), so a drain is short; a run repeats it.

With SO_REUSEPORT the kernel picks a worker per client socket, so the clients are first
mapped to the process that answers them (each process continued alone), and every cycle
loads each process with the same number of requests.

The servers are started by the caller; `raise_priority` puts a server's session (its
autogroup) at nice -20 for the run, so other tenants of a shared machine wait while it drains.
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from collector.system.measurement_sockets import SO_TIMESTAMPNS
from lab import netns

CLIENTS = 64
REQUEST = struct.pack("!IQHH28x", 0, 0, 0x0001, 7)  # seq, T1, error estimate (multiplier 1), SSID
_TIMESPEC = struct.Struct("@qq")
_SO_MEMINFO = 55
_QUIET_S = 0.3  # no new reply for this long: the servers are done (or dropped the rest)
_CYCLE_DEADLINE_S = 20.0
_MAP_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class Drain:
    """One cycle: `replies` of `sent` arrived, the last `seconds` after the servers went on."""

    sent: int
    replies: int
    seconds: float

    @property
    def pps(self) -> float:
        return self.replies / self.seconds if self.seconds > 0 else 0.0


def raise_priority(pid: int, nice: int) -> None:
    """Put the autogroup of `pid`'s session at `nice` (root: below 0)."""
    Path(f"/proc/{pid}/autogroup").write_text(str(nice))


def process_tree(pid: int) -> list[int]:
    """`pid` and its child processes that serve (a reflector's workers; not the resource
    tracker that Python's multiprocessing starts beside them)."""
    try:
        children = [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        children = []
    return [pid, *(child for child in children if b"resource_tracker" not in _cmdline(child))]


def wait_bound(port: int, sockets: int, timeout_s: float = 30.0) -> None:
    """Return once `sockets` UDP sockets are bound to `port` (a reflector's workers bind after
    its first line), else raise."""
    local = f":{port:04X}"
    deadline = time.monotonic() + timeout_s
    while True:
        lines = _lines("/proc/net/udp") + _lines("/proc/net/udp6")
        bound = sum(line.split()[1].endswith(local) for line in lines)
        if bound >= sockets:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{bound} of {sockets} sockets bound to port {port} after {timeout_s:g} s")
        time.sleep(0.05)


def _lines(path: str) -> list[str]:
    return Path(path).read_text().splitlines()[1:]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


class QueueReplay:
    """Clients of one server port, mapped to the server processes that answer them."""

    def __init__(self, address: str, port: int, pids: list[int], clients: int = CLIENTS) -> None:
        self.address = (address, port)
        self.pids = pids
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self.clients: list[socket.socket] = []
        for _ in range(clients):
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            sock.bind((address, 0))
            sock.setblocking(False)
            self.clients.append(sock)
        try:
            self.by_pid = self._map()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for sock in self.clients:
            sock.close()

    def __enter__(self) -> QueueReplay:
        return self

    def __exit__(self, *exc: object) -> None:
        self._signal(signal.SIGCONT)
        self.close()

    def cycle(self, per_process: int) -> Drain:
        """Fill every process's queue with `per_process` requests, continue them all, and time
        the drain by the last reply's kernel receive time."""
        self._signal(signal.SIGSTOP)
        sent = 0
        for pid in self.pids:
            mine = self.by_pid[pid]
            for i in range(per_process):
                mine[i % len(mine)].sendto(REQUEST, self.address)
            sent += per_process
        started_ns = time.time_ns()
        self._signal(signal.SIGCONT)
        self._wait_quiet(sent)
        replies, last_ns = self._collect()
        return Drain(sent, replies, max(0, last_ns - started_ns) / 1e9)

    def _map(self) -> dict[int, list[socket.socket]]:
        """Which process answers which client: each continued alone with one request per
        client. Tried again (`_MAP_ATTEMPTS`) when a process answered no client: a CI run
        once saw one of two answer none within the deadline, which no run here reproduced;
        the mapping only calibrates, and the error says what each process was doing."""
        if len(self.pids) == 1:
            return {self.pids[0]: list(self.clients)}
        for _ in range(_MAP_ATTEMPTS):
            for sock in self.clients:  # a late answer of the attempt before
                self._drain_one(sock)
            mapping = self._map_once()
            missing = [pid for pid, socks in mapping.items() if not socks]
            if not missing:
                return mapping
        states = {pid: _states(pid) for pid in self.pids}
        answered = {pid: len(socks) for pid, socks in mapping.items()}
        raise RuntimeError(
            f"no client of {len(self.clients)} reached process(es) {missing} in {_MAP_ATTEMPTS} attempts"
            f" (clients answered per process {answered}; process states {states})"
        )

    def _map_once(self) -> dict[int, list[socket.socket]]:
        self._signal(signal.SIGSTOP)
        mapping: dict[int, list[socket.socket]] = {}
        try:
            for sock in self.clients:
                sock.sendto(REQUEST, self.address)
            waiting = list(self.clients)
            for i, pid in enumerate(self.pids):
                os.kill(pid, signal.SIGCONT)
                mapping[pid] = self._answered_by_one(waiting, last=i == len(self.pids) - 1)
                os.kill(pid, signal.SIGSTOP)
        finally:
            self._signal(signal.SIGCONT)  # never left stopped
        return mapping

    def _answered_by_one(self, waiting: list[socket.socket], last: bool) -> list[socket.socket]:
        """The clients of `waiting` that the one process running answers (taken out of it).
        A loaded machine may give it the CPU seconds late: its first answer is waited for,
        then no new one for _QUIET_S says it is done, as no event tells that; the last
        process answers every client still waiting."""
        answered: list[socket.socket] = []
        deadline = time.monotonic() + _CYCLE_DEADLINE_S
        changed = time.monotonic()
        while waiting and time.monotonic() < deadline:
            got = [sock for sock in waiting if self._drain_one(sock)]
            if got:
                answered += got
                waiting[:] = [sock for sock in waiting if sock not in got]
                changed = time.monotonic()
            elif answered and not last and time.monotonic() - changed > _QUIET_S:
                break
            time.sleep(0.005)
        return answered

    def _signal(self, signum: int) -> None:
        for pid in self.pids:
            os.kill(pid, signum)

    def _queued(self) -> int:
        """Memory of the replies waiting in the clients' sockets (FIONREAD gives the first only)."""
        return sum(_rmem(sock) for sock in self.clients)

    def _wait_quiet(self, expected: int) -> None:
        unit = _reply_unit()
        deadline = time.monotonic() + _CYCLE_DEADLINE_S
        last, changed = -1, time.monotonic()
        while time.monotonic() < deadline:
            queued = self._queued()
            if queued >= expected * unit:
                return
            if queued != last:
                last, changed = queued, time.monotonic()
            elif time.monotonic() - changed > _QUIET_S:
                return
            time.sleep(0.01)

    def _collect(self) -> tuple[int, int]:
        replies, last_ns = 0, 0
        for sock in self.clients:
            while True:
                try:
                    _data, ancillary, _flags, _addr = sock.recvmsg(64, 64)
                except BlockingIOError:
                    break
                replies += 1
                for level, kind, data in ancillary:
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                        seconds, nanoseconds = _TIMESPEC.unpack_from(data)
                        last_ns = max(last_ns, seconds * 1_000_000_000 + nanoseconds)
        return replies, last_ns

    @staticmethod
    def _drain_one(sock: socket.socket) -> bool:
        got = False
        while True:
            try:
                sock.recv(64)
            except BlockingIOError:
                return got
            got = True


def _states(pid: int) -> str:
    """The state letters of a process's threads, main thread first ('-' for one gone meanwhile)."""
    try:
        threads = sorted(int(t.name) for t in Path(f"/proc/{pid}/task").iterdir())
    except OSError as exc:
        return f"unreadable: {exc.strerror}"
    return "".join(netns.state(pid, thread) or "-" for thread in threads)


def _rmem(sock: socket.socket) -> int:
    """Memory the socket's receive queue holds (SO_MEMINFO's first field)."""
    return struct.unpack("9I", sock.getsockopt(socket.SOL_SOCKET, _SO_MEMINFO, 36))[0]


@functools.cache
def _reply_unit() -> int:
    """Queue memory one 44-octet datagram takes here, measured once on loopback."""
    udp6 = (socket.AF_INET6, socket.SOCK_DGRAM)
    with socket.socket(*udp6) as rx, socket.socket(*udp6) as tx:
        rx.bind(("::1", 0))
        tx.sendto(REQUEST, rx.getsockname()[:2])
        deadline = time.monotonic() + 5
        while not _rmem(rx) and time.monotonic() < deadline:
            time.sleep(0.001)
        return _rmem(rx) or 1
