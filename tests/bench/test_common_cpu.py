"""The benchmarks' CPU figures: read from a process's CPU-time clock, fine enough for a
smoke round that runs for milliseconds (/proc's 10 ms ticks read zero for one)."""

from __future__ import annotations

import subprocess
import sys

from bench._common import cpu_seconds


def test_less_than_a_tick_of_work_reads_as_more_than_zero():
    before = cpu_seconds()
    sum(range(20_000))  # about a millisecond
    assert 0.0 < cpu_seconds() - before < 1.0


def test_another_process_is_read_by_its_pid_until_it_is_reaped():
    child = subprocess.Popen(
        [sys.executable, "-c", "print('ready', flush=True); import sys; sys.stdin.read()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        alive = cpu_seconds(child.pid)
        assert alive > 0.0  # the interpreter's start
        assert child.stdin is not None
        child.stdin.close()
        while child.poll() is None:  # which reaps it once it has ended
            assert cpu_seconds(child.pid) >= alive  # living, or ended and not yet reaped
        assert child.returncode == 0
    finally:
        child.kill()
        child.wait()
