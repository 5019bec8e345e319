"""`xnetmon status`: ask a running analyzer how every slice is doing."""

from __future__ import annotations

import argparse
import json

from xnetmon.errors import UsageError

DEFAULT_ANALYZER = "http://[::1]:9863"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "status",
        help="per-slice SLA status from a running analyzer",
        description="Print each slice's SLA status, error budget, burn rates and worst path, as the "
        "analyzer judges them. --slice shows one slice's objectives too.",
    )
    p.add_argument(
        "--analyzer",
        default=DEFAULT_ANALYZER,
        metavar="URL",
        help=f"the analyzer's API (default {DEFAULT_ANALYZER}, where xnetmon run and xnetmon analyzer listen)",
    )
    p.add_argument("--slice", help="one slice, with its objectives")
    p.add_argument("--json", action="store_true", help="the analyzer's JSON, for scripts")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from xnetmon.status_view import AnalyzerUnreachable, fetch, objective_table, slice_table

    try:
        slices = fetch(args.analyzer)
        detail = fetch(args.analyzer, f"/slices/{args.slice}") if args.slice else None
    except AnalyzerUnreachable as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        print(json.dumps(detail if detail is not None else slices, indent=2))
        return 0
    console = Console(width=None if Console().is_terminal else 132)  # logs and pipes: no wrapping
    shown = [s for s in slices if detail is None or s["name"] == args.slice]
    console.print(slice_table(shown, title=f"slices at {args.analyzer}"))
    if detail is not None:
        console.print(objective_table(detail))
    return 0
