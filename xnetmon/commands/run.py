"""`xnetmon run`: the all-in-one monitor on the embedded default.

Today: a stateful STAMP reflector on loopback and one STAMP session per default slice
towards it, each slice marked with its own DSCP, with a per-slice table printed every
report interval until Ctrl-C (or --duration). Later parts (lab targets, analyzer,
exporter, API) plug in here.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from collector.clock import shared_host_clock
from collector.probes.stamp import StampEndpoint, StampProbe
from collector.probes.stamp_session import SenderSettings
from collector.records import ProbeResult
from collector.reflector import Reflector, ReflectorConfig
from collector.slice_catalog import DEFAULT_SLICES
from collector.summary import ProbeSummary
from xnetmon.commands.common import milliseconds, port_number, positive_float

LOOPBACK = "::1"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run",
        help="the all-in-one monitor on the embedded default (loopback, every slice)",
        description="Start a STAMP reflector and probe it once per slice, printing per-slice "
        "delay, loss and jitter every report interval. Ctrl-C stops.",
    )
    p.add_argument("-i", "--interval", type=positive_float, default=0.1, help="seconds between probes per slice")
    p.add_argument("--report-every", type=positive_float, default=5.0, metavar="SECONDS")
    p.add_argument("--duration", type=positive_float, help="stop after this many seconds")
    p.add_argument("-p", "--port", type=port_number, default=0, help="reflector port (default: any free one)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    clock = shared_host_clock()  # sender and reflector share this host's clock
    config = ReflectorConfig(bind=(LOOPBACK,), port=args.port, stateful=True, clock=clock, rate_limit_pps=0)
    with Reflector(config) as reflector:
        print(f"xnetmon: STAMP reflector on [{LOOPBACK}]:{reflector.port}; one session per slice "
              f"every {args.interval}s; a report every {args.report_every}s. Ctrl-C stops.", flush=True)
        windows: dict[str, list[ProbeResult]] = {s.name: [] for s in DEFAULT_SLICES}
        totals: dict[str, list[ProbeResult]] = {s.name: [] for s in DEFAULT_SLICES}
        try:
            asyncio.run(_monitor(args, reflector.port, clock, windows, totals))
        except KeyboardInterrupt:
            pass
        print("\ntotal since start")
        _print_table(totals)
    return 0


async def _monitor(args, port: int, clock, windows, totals) -> None:
    probes = [
        StampProbe(
            StampEndpoint(LOOPBACK, port),
            SenderSettings(target="loopback", slice=s.name, dscp=s.dscp,
                           timeout_ns=1_000_000_000, error_estimate=clock.error_estimate()),
        )
        for s in DEFAULT_SLICES
    ]
    # Spread the sessions over the interval so that slices never probe in a burst.
    offsets = [i * args.interval / len(probes) for i in range(len(probes))]
    tasks = [
        asyncio.create_task(_probe_slice(p, offset, args.interval, windows, totals))
        for p, offset in zip(probes, offsets)
    ]
    deadline = time.monotonic() + args.duration if args.duration else None
    try:
        while deadline is None or time.monotonic() < deadline:
            wait = args.report_every if deadline is None else min(args.report_every, deadline - time.monotonic())
            await asyncio.sleep(max(0.0, wait))
            print(time.strftime("\n%H:%M:%S"), flush=True)
            _print_table(windows)
            for window in windows.values():
                window.clear()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for probe in probes:
            probe.close()


async def _probe_slice(probe: StampProbe, offset: float, interval: float, windows, totals) -> None:
    await asyncio.sleep(offset)
    async for result in probe.run(None, interval):
        windows[result.slice].append(result)
        totals[result.slice].append(result)


def _print_table(results_by_slice: dict[str, list[ProbeResult]]) -> None:
    print(f"{'slice':<12} {'sent':>6} {'recv':>6} {'loss':>7} {'fwd/rev lost':>12} "
          f"{'rtt p50':>9} {'rtt p99':>9} {'jitter':>9}  (ms)")
    for name, results in results_by_slice.items():
        s = ProbeSummary.from_results(results)
        print(
            f"{name:<12} {s.sent:>6} {s.received:>6} {s.loss_ratio:>7.1%} "
            f"{f'{s.lost_forward}/{s.lost_reverse}':>12} {milliseconds(s.rtt_p50_ns):>9} "
            f"{milliseconds(s.rtt_p99_ns):>9} {milliseconds(s.ipdv_mean_abs_ns):>9}",
            flush=True,
        )
