#!/usr/bin/env python3
"""Window close -> verdict latency, through the bus against HTTP, side by side in one run.

Synthetic agents (SITES sites, PATHS paths each over the 4 slices) close a window per path
at every interval boundary of the wall clock and hand the batch to their sink at once,
stamping it with that moment (the batch's `created_ns`). A window is in a verdict once its
slice's interval closes in the analyzer's store (the slice tracker takes the interval's
sums: `WindowStore` closes an interval as soon as every path of the slice has reported in
it), which the bench sees by a tracker that notes the wall time of each interval it takes.
A window's latency is that time less its stamp; p50 and p99 over every window of a
repetition, the first WARM_UP intervals left out (the store closes the very first interval
only once the next arrives).

    bus:  BusSink (spool, TLS, per-site certificate) -> nats-server -> BusIntake -> store
    http: HttpSink (spool, plain HTTP on loopback) -> POST /v1/windows -> store

Both ends run in this process, as in the all-in-one, with one nats-server started on free
ports; the paths alternate their order between repetitions. Reported: p50, p99 and max per
repetition, their medians over repetitions, and the ratios bus / http.

    .venv/bin/python bench/verdict_latency.py                     # 20 sites x 8 paths, 1 s, 20 intervals, 3 reps
    .venv/bin/python bench/verdict_latency.py --sites 2 --paths 4 --interval 0.2 --intervals 6 --reps 1

No root needed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import _common as c

from analyzer.api.app import create_app
from analyzer.bus_intake import BusIntake
from analyzer.service import ApiServer
from analyzer.sla.verdicts import SlaTracker, default_policies
from analyzer.store.memory import WindowStore
from collector.contract.examples import example_health, example_window
from collector.contract.records import PathKey
from collector.contract.shipment import ShipmentBatch
from collector.outputs.bus_sink import BusSink
from collector.outputs.sinks import Backoff, HttpSink
from xnetmon import bus_setup
from xnetmon.nats_server import NatsServer

SLICES = ("video", "egov", "data", "best-effort")
TOKEN = "bench-token"
WARM_UP = 2  # intervals left out of the figures
DEADLINE_S = 300.0
FAST = Backoff(initial_s=0.05, cap_s=0.5)


class ClosedIntervals:
    """When (wall time) each slice's interval entered its verdicts, by (slice, interval start)."""

    def __init__(self) -> None:
        self.at: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()

    def tracker_type(self):
        closed = self

        class NotingTracker(SlaTracker):
            def add(self, stats) -> None:
                super().add(stats)
                if self.path is None:  # the slice's tracker: its verdict now includes the interval
                    with closed._lock:
                        closed.at.setdefault((self.policy.slice, stats.start_ns), time.time_ns())

        return NotingTracker

    def count(self) -> int:
        with self._lock:
            return len(self.at)


def make_store(closed: ClosedIntervals, interval_s: float) -> WindowStore:
    return WindowStore(default_policies(), interval_s=interval_s, tracker_type=closed.tracker_type())


def site_windows(site: str, paths: int, n: int, interval_ns: int) -> tuple:
    """A site's windows of interval `n`, its paths spread over the slices."""
    return tuple(
        example_window(PathKey(site, f"target{p:02d}", SLICES[p % len(SLICES)], "stamp"), n, interval_ns=interval_ns)
        for p in range(paths)
    )


def run_agents(sinks: dict, paths: int, interval_ns: int, intervals: int) -> dict[tuple[str, int], int]:
    """Each interval boundary: every site's windows of the interval just ended, stamped and
    submitted. Returns the stamps by (site, interval start)."""
    stamps: dict[tuple[str, int], int] = {}
    first = time.time_ns() // interval_ns + 1
    for n in range(first, first + intervals):
        boundary = (n + 1) * interval_ns
        time.sleep(max(0.0, (boundary - time.time_ns()) / 1e9))  # the wall clock's boundary: the load's pace
        for site, sink in sinks.items():
            windows = site_windows(site, paths, n, interval_ns)
            stamp = time.time_ns()
            stamps[(site, n * interval_ns)] = stamp
            sink.submit(ShipmentBatch(site, windows, created_ns=stamp))
    return stamps


def latencies(stamps: dict, closed: ClosedIntervals, paths: int, interval_ns: int) -> list[float]:
    """Per window, seconds from its stamp to its slice's interval in the verdicts."""
    starts = sorted({start for _, start in stamps})[WARM_UP:]
    slices_of_site = [SLICES[p % len(SLICES)] for p in range(paths)]
    found = []
    for (_, start), stamp in stamps.items():
        if start in starts:
            found.extend((closed.at[(name, start)] - stamp) / 1e9 for name in slices_of_site)
    return found


def wait_closed(closed: ClosedIntervals, expected: int) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while closed.count() < expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {closed.count()} of {expected} slice intervals closed in {DEADLINE_S:g} s")
        time.sleep(0.01)


def warm_up(sinks: dict, store: WindowStore) -> None:
    """Connections up (TLS handshakes done) before the first window, as on sites that have run a while."""
    for site, sink in sinks.items():
        sink.submit(ShipmentBatch(site, (), health=example_health(site)))
    deadline = time.monotonic() + DEADLINE_S
    while len(store.agents()) < len(sinks):
        if time.monotonic() > deadline:
            raise RuntimeError("the sinks did not connect")
        time.sleep(0.005)


def measure(sinks: dict, store: WindowStore, closed: ClosedIntervals, args) -> dict:
    interval_ns = round(args.interval * 1e9)
    warm_up(sinks, store)
    stamps = run_agents(sinks, args.paths, interval_ns, args.intervals)
    wait_closed(closed, len(SLICES) * args.intervals)
    values = latencies(stamps, closed, args.paths, interval_ns)
    return {
        "windows": len(values),
        "p50_s": c.percentile(values, 50),
        "p99_s": c.percentile(values, 99),
        "max_s": max(values),
    }


def run_bus(args, workdir: Path, pki: Path, sites: list[str]) -> dict:
    closed = ClosedIntervals()
    store = make_store(closed, args.interval)
    with NatsServer(pki, workdir / "server") as server:
        intake = BusIntake(
            store, bus_setup.analyzer_endpoint(pki, (server.url,)), "bench", checkpoint_every_s=DEADLINE_S
        )
        intake.connected.wait(DEADLINE_S)
        sinks = {
            site: BusSink(
                bus_setup.site_endpoint(pki, site, (server.url,)), site, workdir / f"spool-{site}", backoff=FAST
            )
            for site in sites
        }
        try:
            return measure(sinks, store, closed, args)
        finally:
            for sink in sinks.values():
                sink.close()
            intake.stop()


def run_http(args, workdir: Path, sites: list[str]) -> dict:
    closed = ClosedIntervals()
    store = make_store(closed, args.interval)
    with ApiServer(create_app(store, token=TOKEN), ("::1", 0)) as server:
        sinks = {site: HttpSink(server.url, TOKEN, workdir / f"spool-{site}", backoff=FAST) for site in sites}
        try:
            return measure(sinks, store, closed, args)
        finally:
            for sink in sinks.values():
                sink.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", type=int, default=20)
    parser.add_argument("--paths", type=int, default=8, help="paths per site, over the 4 slices")
    parser.add_argument("--interval", type=float, default=1.0, help="window length in seconds")
    parser.add_argument("--intervals", type=int, default=20)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--output")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    if args.intervals <= WARM_UP or args.paths < len(SLICES):
        parser.error(f"--intervals must exceed {WARM_UP} and --paths cover the {len(SLICES)} slices")
    sites = [f"site{s:04d}" for s in range(args.sites)]
    rounds: dict[str, list[dict]] = {"bus": [], "http": []}
    with tempfile.TemporaryDirectory(prefix="xnetmon-bench-latency-") as tmp:
        root = Path(tmp)
        pki = bus_setup.init(root / "pki")
        for site in sites:
            bus_setup.add_site(pki, site)
        for rep in range(args.reps):
            for path in ("bus", "http") if rep % 2 == 0 else ("http", "bus"):
                workdir = root / f"{path}-{rep}"
                rounds[path].append(
                    run_bus(args, workdir, pki, sites) if path == "bus" else run_http(args, workdir, sites)
                )
    medians = {
        path: {key: c.median([r[key] for r in results]) for key in ("p50_s", "p99_s", "max_s")}
        for path, results in rounds.items()
    }
    payload = {
        "benchmark": "verdict_latency",
        "environment": c.environment(),
        "parameters": {
            "sites": args.sites,
            "paths": args.paths,
            "interval_s": args.interval,
            "intervals": args.intervals,
            "reps": args.reps,
            "warm_up_intervals": WARM_UP,
        },
        "rounds": rounds,
        "medians": medians,
        "bus_over_http_p50": c.ratio(medians["bus"]["p50_s"], medians["http"]["p50_s"]),
        "bus_over_http_p99": c.ratio(medians["bus"]["p99_s"], medians["http"]["p99_s"]),
    }
    path = c.write_result("verdict_latency", payload, args.output)
    if not args.quiet:
        rows = [[name, m["p50_s"] * 1e3, m["p99_s"] * 1e3, m["max_s"] * 1e3] for name, m in medians.items()]
        print(c.table(["intake", "p50 ms", "p99 ms", "max ms"], rows))
        print(
            f"bus / http: p50 {payload['bus_over_http_p50']:.2f}, p99 {payload['bus_over_http_p99']:.2f}  "
            f"({args.sites} sites x {args.paths} paths, {args.interval:g} s windows; result {path})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
