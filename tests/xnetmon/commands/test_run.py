"""`xnetmon run`'s watching and choosing, without a deployment of its own: the status table
printed every --report-every seconds from a real analyzer API, what it says when the
analyzer is away, and loopback chosen when there is no root. (tests/xnetmon/test_stamp_commands.py
runs the whole monitor on loopback.)"""

from __future__ import annotations

import argparse
import contextlib
import io
import socket
import subprocess
from types import SimpleNamespace

from rich.console import Console

from analyzer.api.app import create_app
from analyzer.service import ApiServer
from analyzer.sla.verdicts import default_policies
from analyzer.store.memory import WindowStore
from tests.analyzer_support import T0, batch, settled, window
from tests.support import REPO, XNETMON
from xnetmon.allinone import API_PORT
from xnetmon.commands import run as run_command


def console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=132), out


def test_without_a_terminal_the_table_is_printed_every_report_period_until_the_duration():
    store = WindowStore(default_policies(), catch_up_s=0)
    store.ingest(batch(window(T0)), settled(T0))
    with ApiServer(create_app(store, token=None, clock=lambda: settled(T0)), ("::1", 0)) as server:
        shown, out = console()
        run_command._watch(
            SimpleNamespace(api_url=server.url), argparse.Namespace(duration=0.5, report_every=0.2), shown
        )
    tables = out.getvalue().count("┃ slice")
    assert 1 <= tables <= 2  # after 0.2 s, and after 0.4 s unless fetching the first took long; never a third
    assert "video" in out.getvalue() and "best-effort" in out.getvalue()


def test_an_analyzer_that_is_away_is_said_in_place_of_the_table():
    shown, out = console()
    run_command._print_table(SimpleNamespace(api_url="http://[::1]:1"), shown, "at exit")
    assert out.getvalue().startswith("no analyzer answers at http://[::1]:1")


def test_without_root_it_monitors_loopback_and_says_why(monkeypatch):
    monkeypatch.setattr(run_command.os, "geteuid", lambda: 1000)
    shown, out = console()
    with contextlib.ExitStack() as stack:
        assert run_command._lab_or_none(stack, shown) is None
    assert out.getvalue() == "xnetmon: not root, so no lab: monitoring loopback instead\n"
    assert run_command.EMBEDDED_CONFIG.is_file()  # what it then runs


def test_a_port_another_monitor_holds_is_a_usage_error_not_a_traceback():
    holder = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    try:
        with contextlib.suppress(OSError):  # already held by another monitor: the same case
            holder.bind(("::1", API_PORT))
            holder.listen()
        done = subprocess.run(
            [*XNETMON, "run", "--loopback", "--duration", "30"], capture_output=True, text=True, timeout=120, cwd=REPO
        )
    finally:
        holder.close()
    assert done.returncode == 2, done.stderr
    assert "cannot start the monitor: Address already in use" in done.stderr
    assert "Traceback" not in done.stderr


def test_replicas_are_bounded_and_need_the_lab():
    assert run_command.replica_count("2") == 2
    for wrong in ("0", str(run_command.MAX_REPLICAS + 1)):
        try:
            run_command.replica_count(wrong)
        except argparse.ArgumentTypeError as exc:
            assert f"is not in 1..{run_command.MAX_REPLICAS}" in str(exc)
        else:
            raise AssertionError(f"--replicas {wrong} was taken")
    done = subprocess.run(
        [*XNETMON, "run", "--loopback", "--replicas", "2", "--duration", "5"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert done.returncode == 2 and "--replicas needs the lab (root)" in done.stderr, done.stderr
