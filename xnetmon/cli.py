"""`xnetmon` entry point: an argparse tree whose branches live beside the code they drive.

Each module in COMMAND_MODULES has `register(subparsers)` that adds its sub-commands and
sets `handler=callable(args) -> int` on each. Heavy imports (scapy, fastapi) belong inside
handlers so that `xnetmon --help` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys

from xnetmon.errors import UsageError

COMMAND_MODULES = (
    "xnetmon.commands.run",
    "xnetmon.commands.probe",
    "xnetmon.commands.reflect",
    "xnetmon.commands.agent",
    "xnetmon.commands.analyzer",
    "xnetmon.commands.status",
    "xnetmon.commands.why",
    "xnetmon.commands.lab",
    "xnetmon.commands.capture",
    "xnetmon.commands.flows",
    "xnetmon.commands.bus",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xnetmon",
        description="Per-slice monitoring of an IPv6 extranet: probes, flows, SLAs, root causes.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    # A service manager's SIGTERM ends a command like Ctrl-C does: summaries still print.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return int(handler(args) or 0)
    except UsageError as exc:
        print(f"xnetmon {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`xnetmon probe ... | head`): stop quietly, as ping does.
        # Point stdout at /dev/null so the interpreter's final flush does not complain.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
