"""`xnetmon reflect`: its banner says the mode it runs in, its summary every counter, and
what keeps it from starting is one line."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess

from collector.reflector.session_reflector import ReflectorStats
from tests.stamp_support import reflector_answers
from tests.support import REPO, XNETMON, stop_process, xnetmon
from xnetmon import cli
from xnetmon.commands import reflect
from xnetmon.commands.reflect import describe_stats


def test_the_summary_counts_every_fate_and_names_malformed_kinds():
    stats = ReflectorStats(received=10, reflected=6, refused_not_allowed=1, refused_rate_limited=2)
    assert describe_stats(stats) == "10 received, 6 reflected, 0 malformed, refused: 1 not allowed, 2 over rate"
    stats.malformed["short"] += 2
    stats.malformed["bad-hmac"] += 1
    assert describe_stats(stats).startswith("10 received, 6 reflected, 3 malformed (bad-hmac 1, short 2), refused:")
    stats.refused_global_rate_limited, stats.refused_replay, stats.refused_stale = 4, 5, 6
    assert describe_stats(stats).endswith("2 over rate, 4 over global rate, 5 replayed, 6 stale")


def test_the_banner_names_the_mode_and_every_address_and_the_summary_follows_the_stop(tmp_path):
    key = tmp_path / "key"
    key.write_text("reflector-key-0123456789\n")
    proc = subprocess.Popen(
        [
            *XNETMON,
            "reflect",
            "--bind",
            "::1",
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--stateful",
            "--auth-key-file",
            str(key),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        banner = proc.stdout.readline()
        found = re.fullmatch(
            r"STAMP reflector \(stateful, authenticated\) listening on \[::1\]:(\d+), "
            r"\[127\.0\.0\.1\]:\d+\n",
            banner,
        )
        assert found, banner
        assert reflector_answers(int(found.group(1)), key=b"reflector-key-0123456789")
    finally:
        stop_process(proc)  # SIGTERM as soon as the reply is in: the summary still counts it
    assert proc.returncode == 0
    assert proc.stdout.read() == "1 received, 1 reflected, 0 malformed, refused: 0 not allowed, 0 over rate\n"


def test_workers_share_the_port_and_the_summary_adds_up_their_counters():
    proc = subprocess.Popen(
        [*XNETMON, "reflect", "--bind", "::1", "--port", "0", "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        banner = proc.stdout.readline()
        found = re.fullmatch(r"STAMP reflector \(stateless, 2 workers\) listening on \[::1\]:(\d+)\n", banner)
        assert found, banner
        # One socket per request: the kernel's hash spreads them over the workers.
        assert all(reflector_answers(int(found.group(1))) for _ in range(8))
    finally:
        stop_process(proc)
    assert proc.returncode == 0
    assert proc.stdout.read() == "8 received, 8 reflected, 0 malformed, refused: 0 not allowed, 0 over rate\n"


def test_a_sigterm_as_the_banner_goes_out_still_ends_with_the_summary(monkeypatch, capsys):
    # The command's own print sends the signal once the banner is written, so it lands at that
    # moment every time: before the command is waiting for one.
    def print_then_signal(*args, **kwargs) -> None:
        print(*args, **kwargs)
        if "listening" in args[0]:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(reflect, "print", print_then_signal, raising=False)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        status = cli.main(["reflect", "--bind", "::1", "--port", "0"])
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert status == 0
    assert re.fullmatch(
        r"STAMP reflector \(stateless\) listening on \[::1\]:\d+\n"
        r"0 received, 0 reflected, 0 malformed, refused: 0 not allowed, 0 over rate\n",
        capsys.readouterr().out,
    )


def test_what_keeps_it_from_starting_is_one_line(tmp_path):
    (tmp_path / "empty").write_text("\n")
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as taken:
        taken.bind(("::1", 0))
        port = str(taken.getsockname()[1])
        cases = {
            ("--bind", "::1", "--port", port): f"xnetmon reflect: cannot listen on port {port}: Address already in use",
            ("--auth-key-file", str(tmp_path / "empty")): f"xnetmon reflect: key file {tmp_path / 'empty'} is empty",
            ("--port", "70000"): "is not a UDP port",
            ("--permit-dscp", "64"): "DSCP 64 is not in 0..63",
            ("--workers", "0"): "--workers: expected 1..64, got 0",
        }
        for argv, message in cases.items():
            done = xnetmon("reflect", *argv)
            assert done.returncode == 2 and message in done.stderr, (argv, done.stderr)
            assert "Traceback" not in done.stderr
