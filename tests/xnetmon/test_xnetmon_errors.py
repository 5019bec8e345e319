"""UsageError (xnetmon.errors), the command line's one error: raised by a sub-command, the entry
point prints its message after the command's name, without a traceback, and exits 2; any other
error is not taken for the user's mistake."""

from __future__ import annotations

import argparse

import pytest

from xnetmon import cli
from xnetmon.errors import UsageError


def failing_with(error: Exception) -> argparse.ArgumentParser:
    """The entry point's parser with one command, `fix`, whose handler raises `error`."""

    def handler(args: argparse.Namespace) -> int:
        raise error

    parser = argparse.ArgumentParser(prog="xnetmon")
    parser.add_subparsers(dest="command").add_parser("fix").set_defaults(handler=handler)
    return parser


def test_a_usage_error_exits_2_with_its_message_after_the_commands_name(capsys, monkeypatch):
    monkeypatch.setattr(cli, "build_parser", lambda: failing_with(UsageError("--size must be in 8..65527 octets")))
    assert cli.main(["fix"]) == 2
    assert capsys.readouterr() == ("", "xnetmon fix: --size must be in 8..65527 octets\n")


def test_the_sub_commands_usage_errors_are_the_one_the_entry_point_catches(capsys):
    assert cli.main(["probe", "icmp", "-c", "0", "::1"]) == 2
    assert capsys.readouterr() == ("", "xnetmon probe: count must be at least 1\n")


def test_any_other_error_is_not_a_usage_error(monkeypatch):
    monkeypatch.setattr(cli, "build_parser", lambda: failing_with(ValueError("a bug")))
    with pytest.raises(ValueError, match="a bug"):
        cli.main(["fix"])
