#!/usr/bin/env python3
"""A bus outage under load: SITES agents publish PATHS windows per interval each through
their BusSinks; nats-server is stopped for OUTAGE seconds and started again; then every
window must be in the stream exactly once and in order per path, and the analyzer
(BusIntake into a WindowStore) must have taken each once. Side by side in the same run,
the same load without an outage is the peer: its figures say what the outage cost.

Reported: windows published, found in the stream, duplicates and order breaks (both must
be 0), windows dropped by the spools' bound, the deepest spool during the outage, and how
long after the restart the last window reached the analyzer.

    .venv/bin/python bench/bus_outage.py                      # 300 s outage, 20 sites x 100 paths, 1 s intervals
    .venv/bin/python bench/bus_outage.py --outage 5 --sites 3 --paths 10 --interval 0.2

No root needed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import _common as c

from analyzer.bus_intake import BusIntake
from analyzer.sla.verdicts import default_policies
from analyzer.store.memory import WindowStore
from collector.bus.connection import BusEndpoint, run_on_bus_loop
from collector.bus.stream import STREAM_NAME
from collector.contract.codec import ShipmentParser
from collector.contract.examples import example_window
from collector.contract.records import PathKey
from collector.contract.shipment import ShipmentBatch
from collector.outputs.bus_sink import BusSink
from collector.outputs.sinks import Backoff
from xnetmon import bus_setup
from xnetmon.nats_server import NatsServer

DEADLINE_S = 900.0


def stream_windows(endpoint: BusEndpoint) -> list[tuple[PathKey, int]]:
    """(path, seq) of every window in the stream, in stream order."""
    import nats

    async def read() -> list[tuple[PathKey, int]]:
        client = await nats.connect(**endpoint.connect_options() | {"allow_reconnect": False})
        parser = ShipmentParser()
        found: list[tuple[PathKey, int]] = []
        try:
            js = client.jetstream()
            subscription = await js.pull_subscribe("xnet.windows.*", stream=STREAM_NAME)
            while True:
                try:
                    messages = await subscription.fetch(512, timeout=1.0)
                except (TimeoutError, nats.errors.TimeoutError):
                    return found
                for message in messages:
                    found += [(w.key, w.seq) for w in parser.parse(message.data).windows]
                    await message.ack()
        finally:
            await client.close()

    return run_on_bus_loop(read())


def run(args: argparse.Namespace, outage_s: float, root: Path) -> dict:
    pki = bus_setup.init(root / "pki")
    sites = [f"site{s:04d}" for s in range(args.sites)]
    for site in sites:
        bus_setup.add_site(pki, site)
    backoff = Backoff(initial_s=0.1, cap_s=2.0)
    with NatsServer(pki, root / "server") as server:
        store = WindowStore(default_policies())  # only slices with a policy are taken
        endpoint = bus_setup.analyzer_endpoint(pki, (server.url,))
        intake = BusIntake(store, endpoint, "bench")
        intake.connected.wait(30)
        sinks = {
            s: BusSink(bus_setup.site_endpoint(pki, s, (server.url,)), s, root / f"spool-{s}", backoff=backoff)
            for s in sites
        }
        published = 0
        deepest = 0
        stop = threading.Event()

        def publish() -> None:
            nonlocal published
            seq = 0
            while not stop.is_set():
                for site in sites:
                    windows = tuple(
                        example_window(PathKey(site, f"t{p:04d}", "video", "stamp"), seq) for p in range(args.paths)
                    )
                    sinks[site].submit(ShipmentBatch(site, windows))
                    published += len(windows)
                seq += 1
                stop.wait(args.interval)

        publisher = threading.Thread(target=publish)
        publisher.start()
        time.sleep(args.before)  # the load runs for a while before the outage
        if outage_s:
            server.stop()
            ends = time.monotonic() + outage_s
            while time.monotonic() < ends:
                deepest = max(deepest, sum(s.spool_depth for s in sinks.values()))
                time.sleep(0.2)
            server.start()
        restarted = time.monotonic()
        time.sleep(args.after)
        stop.set()
        publisher.join()
        deadline = time.monotonic() + DEADLINE_S
        while sum(s.delivered_total + s.dropped_total for s in sinks.values()) < published:
            if time.monotonic() > deadline:
                raise RuntimeError("the sinks did not deliver within the deadline")
            time.sleep(0.05)
        dropped = sum(s.dropped_total for s in sinks.values())
        while store.counters["windows_ingested"] + store.counters["windows_stale"] < published - dropped:
            if time.monotonic() > deadline:
                raise RuntimeError("the analyzer did not take every window within the deadline")
            time.sleep(0.05)
        caught_up_s = time.monotonic() - restarted - args.after
        for sink in sinks.values():
            sink.close()
        intake.stop()
        stored = stream_windows(endpoint)
    per_path: dict[PathKey, list[int]] = defaultdict(list)
    for key, seq in stored:
        per_path[key].append(seq)
    return {
        "outage_s": outage_s,
        "published": published,
        "in_stream": len(stored),
        "duplicates_in_stream": len(stored) - len(set(stored)),
        "order_breaks": sum(any(b <= a for a, b in zip(s, s[1:], strict=False)) for s in per_path.values()),
        "dropped_at_bound": dropped,
        "analyzer_took": store.counters["windows_ingested"],
        "analyzer_duplicates": store.counters["windows_duplicate"],
        "deepest_spool_windows": deepest,
        "caught_up_after_restart_s": max(0.0, caught_up_s),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--outage", type=float, default=300.0, help="seconds the bus is down")
    parser.add_argument("--sites", type=int, default=20)
    parser.add_argument("--paths", type=int, default=100, help="paths per site")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between a site's batches")
    parser.add_argument("--before", type=float, default=5.0, help="seconds of load before the outage")
    parser.add_argument("--after", type=float, default=5.0, help="seconds of load after the restart")
    parser.add_argument("--output")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="xnetmon-bench-outage-") as tmp:
        for name, outage_s in (("outage", args.outage), ("no outage", 0.0)):
            results[name] = run(args, outage_s, Path(tmp) / name.replace(" ", "-"))
    held = all(
        r["duplicates_in_stream"] == 0
        and r["order_breaks"] == 0
        and r["in_stream"] == r["published"] - r["dropped_at_bound"]
        for r in results.values()
    )
    payload = {
        "benchmark": "bus_outage",
        "environment": c.environment(),
        "parameters": vars(args),
        "runs": results,
        "target": {"what": "every window exactly once, in order per path, across the outage", "met": held},
    }
    path = c.write_result("bus_outage", payload, args.output)
    if not args.quiet:
        keys = list(results["outage"])
        print(c.table(["run", *keys], [[name, *(r[k] for k in keys)] for name, r in results.items()]))
        print(f"exactly once and in order: {held}  (result {path})")
    return 0 if held else 1


if __name__ == "__main__":
    sys.exit(main())
