"""The entry point: every command module registered, help without a command, usage errors in
one line with status 2, and a reader that goes away ending the command quietly."""

from __future__ import annotations

import signal
import subprocess

from tests.stamp_support import reflector_answers
from tests.support import REPO, XNETMON
from xnetmon.cli import COMMAND_MODULES, build_parser, main


def test_every_command_module_adds_its_command():
    commands = build_parser()._subparsers._group_actions[0].choices
    assert set(commands) == {name.rsplit(".", 1)[1] for name in COMMAND_MODULES}


def test_no_command_prints_help_and_is_a_usage_error(capsys, own_sigterm):
    assert main([]) == 2
    assert capsys.readouterr().out.startswith("usage: xnetmon")


def test_a_usage_error_is_one_line_naming_the_command(capsys, own_sigterm):
    assert main(["status", "--analyzer", "http://[::1]:1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xnetmon status: no analyzer answers at http://[::1]:1") and err.count("\n") == 1


def test_a_reader_that_goes_away_ends_the_command_quietly():
    proc = subprocess.Popen(
        [*XNETMON, "probe", "ping", "::1", "--count", "100000", "--interval", "0.01"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )
    proc.stdout.readline()
    proc.stdout.close()  # like `| head -1`
    assert proc.wait(30) == 141
    assert b"Traceback" not in proc.stderr.read()


def test_sigterm_ends_a_command_as_ctrl_c_does():
    proc = subprocess.Popen(
        [*XNETMON, "reflect", "--bind", "::1", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    port = int(proc.stdout.readline().rsplit(":", 1)[1])
    assert reflector_answers(port)  # serving, so the command is where it handles an interrupt
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert "received" in proc.stdout.read()  # the summary still printed
