"""Helpers for tests that run xnetmon as a user would: processes, free ports, namespaces,
and waits on events (never fixed sleeps), so that the suite holds on a loaded machine."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import IO, TypeVar

from xnetmon.free_ports import free_port

XNETMON = [sys.executable, "-m", "xnetmon"]
REPO = Path(__file__).resolve().parent.parent
# How long a wait may take before the test fails. It only bounds a failure: a wait returns
# as soon as its event happens, so a loaded machine makes a test slower, never wrong.
DEADLINE_S = 120.0

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T],
    timeout: float = DEADLINE_S,
    interval: float = 0.05,
    what: str | Callable[[], str] = "the awaited event",
) -> T:
    """Poll `condition` until it returns something truthy, and return that; fail the test
    (AssertionError naming `what`) once `timeout` seconds have passed without it."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what() if callable(what) else what}: not within {timeout:g} s")
        time.sleep(interval)


async def wait_until_async(
    condition: Callable[[], T], timeout: float = DEADLINE_S, interval: float = 0.01, what: str = "the awaited event"
) -> T:
    """`wait_until` for a test's coroutine: the event loop keeps running while it waits."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        await asyncio.sleep(interval)
    return value


def cpu_wait_ns(pid: int | str = "self") -> int:
    """How long a process's threads (this one's by default) have waited for a CPU so far: the
    run-queue delay of /proc/PID/task/*/schedstat, 0 once it is gone. Between two readings:
    lateness a loaded machine caused, which a test of timeliness excuses so that it holds the
    code, not the machine, to its bound."""
    total = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        with contextlib.suppress(OSError):  # a thread that has just ended
            total += int(stat.read_text().split()[1])
    return total


class Stopwatch:
    """The wall time of a piece of work less the time the machine kept this process from a
    CPU meanwhile: the work's own duration, which a loaded machine does not inflate."""

    def __init__(self) -> None:
        self._started_ns, self._waited_ns = time.perf_counter_ns(), cpu_wait_ns()

    def seconds(self) -> float:
        waited_ns = cpu_wait_ns() - self._waited_ns
        return (time.perf_counter_ns() - self._started_ns - waited_ns) / 1e9


def run_until(
    run: Callable[[], Awaitable[object]],
    stop: Callable[[], None],
    done: Callable[[], object],
    during: tuple[Callable[[], object], Callable[[], None]] | None = None,
) -> None:
    """Run the coroutine `run()` until `done()` holds, then `stop()` it and wait for its end.
    `during` is (event, action): `action()` runs once `event()` holds, before `done`."""

    async def main() -> None:
        task = asyncio.create_task(run())
        try:
            if during is not None:
                event, action = during
                await wait_until_async(event, what="the event to act on")
                action()
            await wait_until_async(done, what="the event to stop on")
        finally:
            stop()
            await task

    asyncio.run(main())


def nothing_in_flight(scheduler) -> bool:
    """No STAMP or echo probe of a collector.agent.scheduler.Scheduler awaits its reply: a stop
    now counts none as lost for having been stopped. (A STAMP schedule's target is its
    session; an echo schedule's holds the shared echo prober whose session it is.)"""

    def session(target):
        echo = getattr(target, "echo", None)
        return echo.session if echo is not None else target

    sessions = (session(s.target) for s in scheduler._schedules)
    return all(getattr(session, "outstanding", 0) == 0 for session in sessions)


class CountingBackoff:
    """A collector.outputs.sinks.Backoff that counts the retries it spaces out (each follows
    a failed delivery), so that a test waits for failed attempts instead of sleeping."""

    def __init__(self, backoff) -> None:
        self._backoff = backoff
        self.cap_s = backoff.cap_s
        self.retries = 0

    def delay(self, attempt: int) -> float:
        self.retries += 1
        return self._backoff.delay(attempt)


class LineReader:
    """The lines a process writes to a pipe, read by a thread as they come, so that a test
    waits for a line (the Nth reply, a ready message) instead of sleeping."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line)

    def matching(self, predicate: Callable[[str], bool]) -> list[str]:
        return [line for line in list(self.lines) if predicate(line)]

    def wait_for(self, predicate: Callable[[str], bool], count: int = 1, timeout: float = DEADLINE_S) -> list[str]:
        """The first `count` lines that satisfy `predicate`, once there are that many."""

        def enough() -> list[str] | None:
            ended = not self._thread.is_alive()  # read before the lines: none can follow
            found = self.matching(predicate)
            if len(found) >= count:
                return found[:count]
            assert not ended, f"the output ended before {count} matching line(s): {''.join(self.lines)[-2000:]!r}"
            return None

        return wait_until(
            enough, timeout, what=lambda: f"{count} matching line(s); output so far: {''.join(self.lines)[-2000:]!r}"
        )

    def text(self, timeout: float = DEADLINE_S) -> str:
        """Everything the process wrote, once the pipe has closed (the process ended)."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the output did not end within {timeout:g} s"
        return "".join(self.lines)


def free_udp_port(host: str = "::1") -> int:
    return free_port(host, socket.SOCK_DGRAM)


def free_tcp_port(host: str = "::1") -> int:
    return free_port(host, socket.SOCK_STREAM)


def in_netns(netns: str | None, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", netns, *argv] if netns else argv


def xnetmon(*args: str, netns: str | None = None, timeout: float = DEADLINE_S) -> subprocess.CompletedProcess:
    return subprocess.run(in_netns(netns, [*XNETMON, *args]), capture_output=True, text=True, timeout=timeout, cwd=REPO)


@contextlib.contextmanager
def running_reflector(*args: str, netns: str | None = None) -> Iterator[subprocess.Popen]:
    """`xnetmon reflect ARGS` until the block ends; yields once it is listening."""
    proc = subprocess.Popen(
        in_netns(netns, [*XNETMON, "reflect", *args]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        banner = proc.stdout.readline()
        assert "listening" in banner, f"reflector did not start: {banner!r} {proc.stderr.read()}"
        yield proc
    finally:
        stop_process(proc)


def stop_process(proc: subprocess.Popen, timeout: float = 60) -> None:
    """SIGTERM (xnetmon prints its summary and cleans up), then SIGKILL if it hangs."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def namespaces() -> set[str]:
    """The names of the network namespaces that exist now (`ip netns list`)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


@contextlib.contextmanager
def network_namespace() -> Iterator[str]:
    """A fresh namespace with loopback up, removed afterwards."""
    name = f"xt-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", name], check=False)


@contextlib.contextmanager
def small_filesystem(mountpoint: Path, size: str = "64k") -> Iterator[Path]:
    """A tmpfs of `size` mounted on `mountpoint` (needs root), unmounted afterwards: a disk
    that really fills up."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(mountpoint)], check=True)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "--lazy", str(mountpoint)], check=False)


def fill_filesystem(directory: Path) -> Path:
    """Write a file in `directory` until the filesystem refuses another byte (ENOSPC);
    returns it, so that deleting it gives the space back."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as f:
        for chunk in (4096, 1):
            try:
                while True:
                    f.write(b"\0" * chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    return filler


def dribble_until_cut_off(address: tuple[str, int], still_served: Callable[[], object]) -> float:
    """A slowloris client: opens a connection to `address`, sends a request line and then a
    header a byte at a time (far below any bound on a head's size or line count), until the
    server closes the connection; `still_served()` (another request, asserting its answer)
    runs between bytes. Returns how long the server let it dribble."""
    return dribble(address, b"GET /healthz HTTP/1.1\r\nHost: xnetmon\r\nX-Dribble: ", still_served, 0.5)[0]


def dribble(
    address: tuple[str, int], opening: bytes, still_served: Callable[[], object], interval: float
) -> tuple[float, bytes]:
    """Opens a connection to `address`, sends `opening` and then one byte every `interval`
    seconds until the server closes the connection, running `still_served()` (another
    request, asserting its answer) between bytes. Returns how long the server let it dribble
    after the opening, and everything the server sent meanwhile."""
    answer = bytearray()
    with socket.create_connection(address, timeout=DEADLINE_S) as slow:
        slow.sendall(opening)
        started = time.monotonic()
        slow.setblocking(False)

        def cut_off() -> bool:
            try:  # read first: a byte sent after the server closed would be answered by a reset
                while chunk := slow.recv(65536):
                    answer.extend(chunk)
                closed = True  # end of stream
            except BlockingIOError:
                closed = False  # nothing (more) to read: still connected
            except OSError:
                closed = True  # reset
            if not closed:
                try:
                    slow.sendall(b"a")
                except OSError:
                    closed = True  # the write side shut
            still_served()
            return closed

        wait_until(cut_off, interval=interval, what="the slow client cut off")
        return time.monotonic() - started, bytes(answer)


def read_slowly(
    address: tuple[str, int],
    request: bytes,
    still_served: Callable[[], object],
    interval: float = 1.0,
    tls: ssl.SSLContext | None = None,
) -> tuple[float, int]:
    """Opens a connection with a small receive buffer to `address` (in TLS with `tls`), sends
    `request` and then reads the answer one byte every `interval` seconds until the server
    ends the connection, running `still_served()` between bytes. Returns how long the server
    let it read and how many bytes it got."""
    got = 0
    with socket.socket(socket.AF_INET6 if ":" in address[0] else socket.AF_INET, socket.SOCK_STREAM) as raw:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window stays small
        raw.settimeout(DEADLINE_S)
        raw.connect(address)
        slow = tls.wrap_socket(raw, server_hostname=address[0]) if tls is not None else raw
        slow.sendall(request)
        started = time.monotonic()

        def cut_off() -> bool:
            nonlocal got
            if slow.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                return True  # reset: what is left in the receive queue would still read for ages
            try:
                byte = slow.recv(1)
            except OSError:
                return True
            got += len(byte)
            still_served()
            return not byte  # end of stream

        wait_until(cut_off, interval=interval, what="the slow reader cut off")
        return time.monotonic() - started, got


def failing_fsync(monkeypatch, failures: int) -> list[int]:
    """os.fsync refuses its first `failures` calls with EIO (a disk's write-back error);
    returns the descriptors it synced."""
    synced: list[int] = []
    real_fsync = os.fsync
    left = [failures]

    def fsync(fd: int) -> None:
        if left[0] > 0:
            left[0] -= 1
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(fd)
        synced.append(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return synced
