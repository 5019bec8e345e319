"""`xnetmon probe KIND ...`: probes an engineer runs by hand, one module per kind."""

from __future__ import annotations

import argparse
import importlib

from collector.probes.registry import KINDS
from xnetmon.commands.probe_remote import add_remote_arguments, local_or_remote


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("probe", help="run one probe by hand, like ping")
    kinds = parser.add_subparsers(dest="probe_kind", metavar="KIND", required=True)
    # Each kind of the registry lives in xnetmon/commands/probe_<kind>.py with its own register(kinds).
    for kind in KINDS:
        importlib.import_module(f"xnetmon.commands.probe_{kind}").register(kinds)
        # Every kind also runs at a site's agent over the bus (--from SITE), same options.
        parser = kinds.choices[kind]
        add_remote_arguments(parser)
        parser.set_defaults(handler=local_or_remote(kind, parser.get_default("handler")))
