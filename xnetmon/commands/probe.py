"""`xnetmon probe KIND ...`: probes an engineer runs by hand, one module per kind."""

from __future__ import annotations

import argparse
import importlib

from collector.probes.registry import KINDS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("probe", help="run one probe by hand, like ping")
    kinds = parser.add_subparsers(dest="probe_kind", metavar="KIND", required=True)
    # Each kind of the registry lives in xnetmon/commands/probe_<kind>.py with its own register(kinds).
    for kind in KINDS:
        importlib.import_module(f"xnetmon.commands.probe_{kind}").register(kinds)
