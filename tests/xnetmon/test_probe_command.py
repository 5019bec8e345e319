"""`xnetmon probe KIND`: the kinds are the registry's, and `ping` is another name for `icmp`."""

from __future__ import annotations

from collector.probes.registry import KINDS
from tests.support import xnetmon
from xnetmon.cli import build_parser


def test_each_kind_of_the_registry_is_a_probe_command_of_its_own_module():
    parser = build_parser()
    for kind in KINDS:
        args = parser.parse_args(["probe", kind, "::1"])
        assert args.handler.__module__ == f"xnetmon.commands.probe_{kind}", kind


def test_ping_is_the_icmp_command_and_the_help_says_so():
    parser = build_parser()
    assert parser.parse_args(["probe", "ping", "::1"]).handler is parser.parse_args(["probe", "icmp", "::1"]).handler
    done = xnetmon("probe", "--help")
    assert done.returncode == 0 and "icmp (ping)" in done.stdout, done.stdout
    described = " ".join(xnetmon("probe", "icmp", "--help").stdout.split())
    assert "`xnetmon probe ping` is another name for this command" in described
