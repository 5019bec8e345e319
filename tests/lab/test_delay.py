"""The NFQUEUE delay line in a namespace of its own: echo requests held for the set delay,
replies untouched, a queue served by one line only, and a clean stop on SIGTERM."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import REPO, in_netns, network_namespace

pytestmark = [pytest.mark.root, pytest.mark.tool("ip6tables")]
QUEUE = 7


def delay_line(namespace: str, delay_ms: float, ready: Path) -> subprocess.Popen:
    argv = [
        sys.executable,
        "-m",
        "lab.delay",
        "--queue",
        str(QUEUE),
        "--delay-ms",
        str(delay_ms),
        "--ready-file",
        str(ready),
    ]
    return subprocess.Popen(
        in_netns(namespace, argv),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


@contextlib.contextmanager
def serving(namespace: str, delay_ms: float, tmp_path: Path) -> Iterator[subprocess.Popen]:
    ready = tmp_path / "ready"
    line = delay_line(namespace, delay_ms, ready)
    try:
        deadline = time.monotonic() + 10
        while not ready.exists():
            assert line.poll() is None, line.communicate()[1]
            assert time.monotonic() < deadline, "the delay line did not bind its queue"
            time.sleep(0.01)
        assert ready.read_text() == str(line.pid)
        yield line
    finally:
        if line.poll() is None:
            line.send_signal(signal.SIGTERM)
        line.wait(10)


def ping_rtts_ms(namespace: str, count: int) -> list[float]:
    done = subprocess.run(
        in_netns(namespace, ["ping", "-6", "-n", "-c", str(count), "-i", "0.05", "-W", "2", "::1"]),
        capture_output=True,
        text=True,
        timeout=30,
    )
    return [float(ms) for ms in re.findall(r"time=([\d.]+) ms", done.stdout)]


def test_requests_wait_the_set_delay_and_the_line_stops_cleanly(tmp_path):
    with network_namespace() as namespace:
        rule = [
            "-t",
            "mangle",
            "-A",
            "POSTROUTING",
            "-o",
            "lo",
            "-p",
            "ipv6-icmp",
            "--icmpv6-type",
            "echo-request",
            "-j",
            "NFQUEUE",
            "--queue-num",
            str(QUEUE),
        ]
        subprocess.run(in_netns(namespace, ["ip6tables", "-w", *rule]), check=True)
        with serving(namespace, 40, tmp_path) as line:
            rtts = ping_rtts_ms(namespace, 5)
            second = delay_line(namespace, 10, tmp_path / "second")
            assert second.wait(10) != 0 and f"NFQUEUE {QUEUE}" in second.communicate()[1]  # the queue is taken
        assert line.returncode == 0
    assert len(rtts) == 5
    assert all(40 <= rtt < 40 + 100 for rtt in rtts), rtts  # held once, on the way out only
