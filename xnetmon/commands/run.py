"""`xnetmon run`: the all-in-one monitor, on the embedded default unless given a configuration.

Runs the site agent in this process (reflector, per-slice probing, path windows, /metrics)
and prints each window's per-slice table until Ctrl-C or --duration. The embedded default
(collector/examples/embedded.yaml) probes this machine's own reflector over loopback in
every slice, so a new user sees real numbers at once. Later parts (the analyzer, its API
and SLA verdicts) join this command.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from collections.abc import Iterable
from pathlib import Path

import collector
from collector.records import PathWindow
from collector.shipment import ShipmentBatch
from xnetmon.cli import UsageError
from xnetmon.commands.common import milliseconds, positive_float

EMBEDDED_CONFIG = Path(collector.__file__).parent / "examples" / "embedded.yaml"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run",
        help="the all-in-one monitor (default: this machine over loopback, every slice)",
        description="Run the site agent in this process and print per-slice delay, loss and jitter "
        "for every window. Ctrl-C stops.",
    )
    p.add_argument("--config", help=f"an agent configuration (default: {EMBEDDED_CONFIG.name}, loopback)")
    p.add_argument("--duration", type=positive_float, help="stop after this many seconds")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # The agent's modules load sockets, pydantic and the exporter: only when running.
    from collector.agent import Agent
    from collector.clock import shared_host_clock
    from collector.plan import ConfigError, load_plan
    from collector.sinks import InProcessSink

    config = Path(args.config) if args.config else EMBEDDED_CONFIG
    try:
        plan = load_plan(config)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    totals = SliceTotals()
    # On loopback, sender and reflector read one clock: one-way delays are exact.
    clock = shared_host_clock() if not args.config else None
    agent = Agent(plan, sink=InProcessSink(lambda batch: _print_batch(batch, totals)), clock=clock)
    host, port = plan.metrics_listen
    print(f"xnetmon: site {plan.site}, {len(plan.probes)} probe schedules, a table every {plan.window_s:g} s; "
          f"metrics on http://[{host}]:{port}/metrics. Ctrl-C stops.", flush=True)
    try:
        asyncio.run(_run(agent, args.duration))
    except KeyboardInterrupt:
        pass
    print("\ntotal since start")
    totals.print()
    return 0


async def _run(agent, duration: float | None) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, agent.stop)
    if duration is not None:
        loop.call_later(duration, agent.stop)
    await agent.run()


class SliceTotals:
    """Counts per slice since start, for the closing table."""

    def __init__(self) -> None:
        self.by_slice: dict[str, list[int]] = {}  # sent, received, forward lost, reverse lost

    def add(self, windows: Iterable[PathWindow]) -> None:
        for w in windows:
            row = self.by_slice.setdefault(w.key.slice, [0, 0, 0, 0])
            row[0] += w.sent
            row[1] += w.received
            row[2] += w.lost_forward
            row[3] += w.lost_reverse

    def print(self) -> None:
        print(f"{'slice':<12} {'sent':>6} {'recv':>6} {'loss':>7} {'fwd/rev lost':>12}")
        for name, (sent, received, forward, reverse) in self.by_slice.items():
            loss = (sent - received) / sent if sent else 0.0
            print(f"{name:<12} {sent:>6} {received:>6} {loss:>7.1%} {f'{forward}/{reverse}':>12}", flush=True)


_HEADER = (f"{'slice':<12} {'sent':>6} {'recv':>6} {'loss':>7} {'fwd/rev lost':>12} "
           f"{'rtt p50':>9} {'rtt p99':>9} {'jitter':>9}  (ms)")


def _print_batch(batch: ShipmentBatch, totals: SliceTotals) -> None:
    totals.add(batch.windows)
    by_end: dict[int, list[PathWindow]] = {}
    for w in batch.windows:
        by_end.setdefault(w.end_ns, []).append(w)
    for end_ns, windows in sorted(by_end.items()):
        print(time.strftime("\n%H:%M:%S", time.localtime(end_ns / 1e9)), f"({len(windows)} paths)")
        print(_HEADER)
        for w in windows:
            print(
                f"{w.key.slice:<12} {w.sent:>6} {w.received:>6} {w.loss_ratio:>7.1%} "
                f"{f'{w.lost_forward}/{w.lost_reverse}':>12} {milliseconds(w.rtt_p50_ns):>9} "
                f"{milliseconds(w.rtt_p99_ns):>9} {milliseconds(w.ipdv_mean_abs_ns):>9}",
                flush=True,
            )
