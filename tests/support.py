"""Helpers for tests that run xnetmon as a user would: processes, free ports, namespaces."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

XNETMON = [sys.executable, "-m", "xnetmon"]
REPO = Path(__file__).resolve().parent.parent


def free_udp_port(host: str = "::1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def in_netns(netns: str | None, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", netns, *argv] if netns else argv


def xnetmon(*args: str, netns: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        in_netns(netns, [*XNETMON, *args]), capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


@contextlib.contextmanager
def running_reflector(*args: str, netns: str | None = None) -> Iterator[subprocess.Popen]:
    """`xnetmon reflect ARGS` until the block ends; yields once it is listening."""
    proc = subprocess.Popen(
        in_netns(netns, [*XNETMON, "reflect", *args]),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )
    try:
        banner = proc.stdout.readline()
        assert "listening" in banner, f"reflector did not start: {banner!r} {proc.stderr.read()}"
        yield proc
    finally:
        stop_process(proc)


def stop_process(proc: subprocess.Popen, timeout: float = 5) -> None:
    """SIGTERM (xnetmon prints its summary and cleans up), then SIGKILL if it hangs."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


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
