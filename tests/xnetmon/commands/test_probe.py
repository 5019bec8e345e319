"""`xnetmon probe`: one sub-command per probe kind, each from its own module."""

from __future__ import annotations

import argparse

import pytest

from collector.probes.registry import KINDS
from xnetmon.commands.probe import register


def probe_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xnetmon")
    register(parser.add_subparsers(dest="command"))
    return parser


def test_every_kind_is_a_sub_command_with_its_own_handler():
    parser = probe_parser()
    for kind, target in (("stamp", "::1"), ("ping", "::1"), ("trace", "::1")):
        args = parser.parse_args(["probe", kind, target])
        assert args.probe_kind == kind and callable(args.handler)
    handlers = {parser.parse_args(["probe", kind, "::1"]).handler for kind in KINDS}
    assert len(handlers) == len(KINDS)


def test_a_kind_is_required_and_unknown_kinds_are_refused(capsys):
    for argv in (["probe"], ["probe", "owamp", "::1"]):
        with pytest.raises(SystemExit) as caught:
            probe_parser().parse_args(argv)
        assert caught.value.code == 2
    assert "invalid choice: 'owamp'" in capsys.readouterr().err
