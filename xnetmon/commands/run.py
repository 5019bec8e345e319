"""`xnetmon run`: the all-in-one monitor, with a live per-slice status table.

On this machine as root it brings up the lab's `small` topology (or uses the lab that is
already up), runs an agent on several sites and the analyzer, and shows each slice's SLA
status as the analyzer judges it; without root, or when the lab cannot be built, it
monitors this machine over loopback instead (collector/examples/embedded.yaml). The API and
/metrics URLs are printed; Ctrl-C stops everything it started.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path

import collector
from xnetmon.commands.common import positive_float
from xnetmon.errors import UsageError

EMBEDDED_CONFIG = Path(collector.__file__).parent / "examples" / "embedded.yaml"
MAX_REPLICAS = 4  # each is a store and a consumer more on a machine that runs the whole lab


def replica_count(value: str) -> int:
    number = int(value)
    if not 1 <= number <= MAX_REPLICAS:
        raise argparse.ArgumentTypeError(f"{value} is not in 1..{MAX_REPLICAS}")
    return number


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run",
        help="the all-in-one monitor: agents, analyzer, API and /metrics, with a live status table",
        description="Monitor the lab's small topology (as root; brought up if needed) or, without root "
        "or with --loopback, this machine over loopback. Ctrl-C stops.",
    )
    p.add_argument("--loopback", action="store_true", help="monitor this machine over loopback, not the lab")
    p.add_argument("--config", help="an agent configuration to run in this process (implies --loopback)")
    p.add_argument("--duration", type=positive_float, help="stop after this many seconds")
    p.add_argument(
        "--replicas",
        type=replica_count,
        default=1,
        metavar="N",
        help="on the lab: N analyzers judging the same windows from the bus, APIs on consecutive ports",
    )
    p.add_argument(
        "--report-every",
        type=positive_float,
        default=5.0,
        metavar="SECONDS",
        help="when the output is not a terminal: print the table this often",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console(width=None if Console().is_terminal else 132)  # logs and pipes: no wrapping
    with tempfile.TemporaryDirectory(prefix="xnetmon-run-") as workdir, contextlib.ExitStack() as stack:
        try:
            deployment = _deploy(args, Path(workdir), stack, console)
        except OSError as exc:  # the API's or the agent's port: most often another monitor holds it
            raise UsageError(
                f"cannot start the monitor: {exc.strerror or exc}; is another `xnetmon run` "
                f"or analyzer running on this machine?"
            ) from None
        console.print(
            f"xnetmon: monitoring {deployment.shape} ({', '.join(deployment.sites)}), "
            f"{deployment.interval_s:g} s intervals"
        )
        console.print(f"  API      {deployment.api_url}/slices  (docs: {deployment.api_url}/docs)")
        console.print(f"  console  {deployment.api_url}/ui/")
        for number, url in enumerate(deployment.replica_urls, start=2):
            console.print(f"  API      {url}/slices  (replica {number}, its own consumer of the bus)")
        console.print(f"  metrics  {deployment.metrics_url}")
        console.print(f"  token    {deployment.token_file} (for POST /probe: an on-demand probe from an agent)")
        console.print(f"  flows    {deployment.flows}")
        console.print(f"  bus      {deployment.bus}")
        console.print("  Ctrl-C stops.")
        try:
            _watch(deployment, args, console)
        except KeyboardInterrupt:
            pass
        _print_table(deployment, console, "at exit")
    return 0


def _deploy(args, workdir: Path, stack: contextlib.ExitStack, console):
    from collector.system.clock import shared_host_clock
    from xnetmon.allinone import lab_deployment, loopback_deployment

    lab = None if (args.loopback or args.config) else _lab_or_none(stack, console)
    if lab is not None:
        return stack.enter_context(lab_deployment(lab, workdir, replicas=args.replicas, business_traffic=True))
    if args.replicas > 1:
        raise UsageError("--replicas needs the lab (root): on loopback windows go in-process to one analyzer")
    config = Path(args.config) if args.config else EMBEDDED_CONFIG
    # On loopback, sender and reflector read one clock: one-way delays are exact.
    clock = None if args.config else shared_host_clock()
    return stack.enter_context(loopback_deployment(config, workdir, clock=clock))


def _lab_or_none(stack: contextlib.ExitStack, console):
    """The lab that is up, else a `small` lab brought up now (and down at exit); None when
    this machine cannot build one (not root, or no `ip`)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        console.print("xnetmon: not root, so no lab: monitoring loopback instead")
        return None
    from lab.lab import Lab, LabError

    try:
        lab = Lab.current()
        console.print("xnetmon: using the lab that is already up")
        return lab
    except LabError:
        pass  # none is up: bring one up
    try:
        lab = Lab.from_name("small")
        seconds = lab.up()
    except (LabError, OSError) as exc:
        console.print(f"xnetmon: the lab could not be built ({exc}): monitoring loopback instead")
        return None
    console.print(f"xnetmon: lab `small` up in {seconds:.1f} s; it comes down at exit")
    stack.callback(lab.down)
    return lab


def _watch(deployment, args, console) -> None:
    from rich.live import Live

    deadline = time.monotonic() + args.duration if args.duration else None

    def remaining() -> float:
        return float("inf") if deadline is None else deadline - time.monotonic()

    if console.is_terminal:
        with Live(_table(deployment), console=console, refresh_per_second=2) as live:
            while remaining() > 0:
                time.sleep(min(1.0, max(0.0, remaining())))
                live.update(_table(deployment))
        return
    while remaining() > 0:
        time.sleep(min(args.report_every, max(0.0, remaining())))
        if remaining() > 0:
            _print_table(deployment, console, time.strftime("%H:%M:%S"))


def _table(deployment, title: str | None = None):
    from xnetmon.status_view import AnalyzerUnreachable, fetch, slice_table

    try:
        slices = fetch(deployment.api_url)
    except AnalyzerUnreachable as exc:
        return str(exc)
    return slice_table(slices, title=title or time.strftime("%H:%M:%S"))


def _print_table(deployment, console, title: str) -> None:
    console.print(_table(deployment, title))
