"""`xnetmon probe KIND ...`: probes an engineer runs by hand, one module per kind."""

from __future__ import annotations

import argparse

from xnetmon.commands import probe_stamp

PROBE_KINDS = (probe_stamp,)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("probe", help="run one probe by hand, like ping")
    kinds = parser.add_subparsers(dest="probe_kind", metavar="KIND", required=True)
    for module in PROBE_KINDS:
        module.register(kinds)
