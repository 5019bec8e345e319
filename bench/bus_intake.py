#!/usr/bin/env python3
"""Bus intake against HTTP intake: path windows per second from agents' sinks into the
analyzer's store, through NATS JetStream (BusSink -> nats-server -> BusIntake) and through
HTTP (HttpSink -> POST /v1/windows), on the same windows, side by side in one run.

Workload: SITES agents, each with PATHS paths over 4 slices, INTERVALS intervals; each agent
submits one batch per interval to its own sink (its own spool, as on a site; connected
first by a health report), all at once,
and the clock runs until the store has taken every window (ingested or judged too old:
each window counted once). Both ends run in this process, as in the all-in-one; the bus
path has TLS with per-site certificates, the HTTP path plain HTTP on loopback. Reported per
repetition and as medians: windows per wall second, this process's CPU seconds, and for
the bus nats-server's CPU seconds; the order alternates between repetitions.

    .venv/bin/python bench/bus_intake.py                                 # 20 sites x 500 paths x 6 intervals, 3 reps
    .venv/bin/python bench/bus_intake.py --sites 4 --paths 50 --intervals 2 --reps 1
    .venv/bin/python bench/bus_intake.py --partitions 2     # also: the bus into 2 partition processes

With `--partitions N` a third path runs beside them: the server maps the sites into N
partitions (collector.bus.subjects.partition_mapping) and N analyzer processes each consume
one (BusIntake(partition=i)) into a store of their own, publishing their slices' partial sums
to a combiner in this process (analyzer.combiner_intake), as deployed; its clock runs until
the N stores together hold every window, and its CPU seconds are this process's, the N
analyzers' and nats-server's. `windows_per_partition_cpu_second` is what the partitions
alone take per CPU second: with the sites publishing from their own machines, what a core of
partitions carries. With `--prefilled` the partitions are stopped (SIGSTOP) while the sites
publish into the stream, and the clock runs from their continuing until they hold every
window: the sites' publishing, elsewhere in a deployment, is then not on this machine's cores
while the partitions and nats-server take the windows (the other paths are unchanged).

No root needed. The targets (issue 14): the bus at least as fast as HTTP; at least 50,000
windows/s into a partitioned analysis on this machine's two cores.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import _common as c

from analyzer.api.app import create_app
from analyzer.bus_intake import BusIntake
from analyzer.combiner import PartialsCombiner
from analyzer.combiner_intake import CombinerIntake
from analyzer.partials import PartialsOutbox
from analyzer.service import ApiServer
from analyzer.sla.verdicts import default_policies
from analyzer.store.memory import WindowStore
from collector.contract.examples import example_health, example_window
from collector.contract.records import PathKey
from collector.contract.shipment import ShipmentBatch
from collector.outputs.bus_sink import BusSink
from collector.outputs.sinks import Backoff, HttpSink
from xnetmon import bus_setup
from xnetmon.nats_server import NatsServer

SLICES = ("video", "egov", "data", "best-effort")
INTERVAL_NS = 10_000_000_000
TOKEN = "bench-token"
TAKEN = ("windows_ingested", "windows_duplicate", "windows_stale", "windows_future")  # late ones are ingested too
DEADLINE_S = 600.0
FAST = Backoff(initial_s=0.05, cap_s=0.5)


def make_batches(sites: int, paths: int, intervals: int) -> list[ShipmentBatch]:
    """One batch per site per interval, the latest intervals before now, interval by interval."""
    now = time.time_ns() // INTERVAL_NS
    batches = []
    for seq in range(now - intervals, now):
        for s in range(sites):
            site = f"site{s:04d}"
            windows = tuple(
                example_window(PathKey(site, f"target{p:04d}", SLICES[p % len(SLICES)], "stamp"), seq)
                for p in range(paths)
            )
            batches.append(ShipmentBatch(site, windows, created_ns=(seq + 1) * INTERVAL_NS))
    return batches


def taken(store: WindowStore) -> int:
    stats = store.stats()
    return sum(stats[name] for name in TAKEN)


def wait_for(store: WindowStore, total: int) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while taken(store) < total:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {taken(store)} of {total} windows reached the store in {DEADLINE_S:g} s")
        time.sleep(0.002)


def warm_up(sinks: dict, store: WindowStore) -> None:
    """Each sink delivers its site's health first: connections are up (TLS handshakes done)
    before the clock starts, as on sites that have shipped for a while."""
    for site, sink in sinks.items():
        sink.submit(ShipmentBatch(site, (), health=example_health(site)))
    deadline = time.monotonic() + DEADLINE_S
    while len(store.agents()) < len(sinks):
        if time.monotonic() > deadline:
            raise RuntimeError("the sinks did not connect")
        time.sleep(0.002)


def run_bus(batches: list[ShipmentBatch], workdir: Path, pki: Path, total: int) -> dict:
    sites = sorted({b.site for b in batches})
    with NatsServer(pki, workdir / "server") as server:
        store = WindowStore(default_policies())
        intake = BusIntake(store, bus_setup.analyzer_endpoint(pki, (server.url,)), "bench")
        intake.connected.wait(30)
        sinks = {
            site: BusSink(
                bus_setup.site_endpoint(pki, site, (server.url,)), site, workdir / f"spool-{site}", backoff=FAST
            )
            for site in sites
        }
        warm_up(sinks, store)
        pid = server.pid
        cpu0, server_cpu0, t0 = c.cpu_seconds(), c.cpu_seconds(pid), time.perf_counter()
        for batch in batches:
            sinks[batch.site].submit(batch)
        wait_for(store, total)
        seconds = time.perf_counter() - t0
        cpu, server_cpu = c.cpu_seconds() - cpu0, c.cpu_seconds(pid) - server_cpu0
        for sink in sinks.values():
            sink.close()
        intake.stop()
    return {"seconds": seconds, "cpu_seconds": cpu, "server_cpu_seconds": server_cpu, "windows": taken(store)}


def partition_worker(pki: Path, url: str, index: int, partitions: int, windows, agents, connected, stop) -> None:
    """One partition's analyzer, in a process of its own, publishing its partial sums for the
    combiner as `xnetmon analyzer --partition` does: its counts go to shared values."""
    outbox = PartialsOutbox(index, partitions)
    store = WindowStore(default_policies(), slice_closed=outbox)
    endpoint = bus_setup.analyzer_endpoint(pki, (url,))
    intake = BusIntake(
        store, endpoint, f"bench-p{index}", partition=index, partials=outbox, checkpoint_every_s=DEADLINE_S
    )
    intake.connected.wait(DEADLINE_S)
    connected.release()  # the stream exists: the sinks may publish
    while not stop.wait(0.005):
        windows.value, agents.value = taken(store), len(store.agents())
    intake.stop()


def run_partitioned(
    batches: list[ShipmentBatch], workdir: Path, pki: Path, total: int, partitions: int, prefilled: bool = False
) -> dict:
    """The bus into `partitions` partition processes. `prefilled`: the partitions are stopped
    (SIGSTOP) while the sites publish, and the clock runs from their continuing until they
    hold every window, so the publishers' CPU (elsewhere in a deployment) is not on the
    machine while the partitions and nats-server take the stream."""
    sites = sorted({b.site for b in batches})
    context = multiprocessing.get_context("spawn")  # no fork of a process with threads
    with NatsServer(pki, workdir / "server", partitions=partitions) as server:
        stop, connected = context.Event(), context.Semaphore(0)
        counts = [(context.Value("q", 0, lock=False), context.Value("q", 0, lock=False)) for _ in range(partitions)]
        workers = [
            context.Process(
                target=partition_worker, args=(pki, server.url, i, partitions, windows, agents, connected, stop)
            )
            for i, (windows, agents) in enumerate(counts)
        ]
        for worker in workers:
            worker.start()
        for _ in workers:
            if not connected.acquire(timeout=DEADLINE_S):
                raise RuntimeError("a partition's analyzer did not connect")
        combiner = PartialsCombiner(WindowStore(default_policies()), partitions)
        combiner_intake = CombinerIntake(combiner, bus_setup.analyzer_endpoint(pki, (server.url,)), "bench-combiner")
        combiner_intake.connected.wait(DEADLINE_S)
        sinks = {
            site: BusSink(
                bus_setup.site_endpoint(pki, site, (server.url,)), site, workdir / f"spool-{site}", backoff=FAST
            )
            for site in sites
        }
        for site, sink in sinks.items():  # connected before the clock starts, as in run_bus
            sink.submit(ShipmentBatch(site, (), health=example_health(site)))
        wait_counts(lambda: sum(a.value for _, a in counts), len(sites), "the sinks' health in the partitions")
        pids = [server.pid, *(w.pid for w in workers)]
        if prefilled:
            for worker in workers:
                os.kill(worker.pid, signal.SIGSTOP)
            for batch in batches:
                sinks[batch.site].submit(batch)
            wait_counts(lambda: sum(s.delivered_total for s in sinks.values()), total, "every window in the stream")
        cpu0, others0, t0 = c.cpu_seconds(), [c.cpu_seconds(pid) for pid in pids], time.perf_counter()
        if prefilled:
            for worker in workers:
                os.kill(worker.pid, signal.SIGCONT)
        else:
            for batch in batches:
                sinks[batch.site].submit(batch)
        wait_counts(lambda: sum(w.value for w, _ in counts), total, "every window in the partitions")
        seconds = time.perf_counter() - t0
        cpu = c.cpu_seconds() - cpu0
        others = [c.cpu_seconds(pid) - before for pid, before in zip(pids, others0, strict=True)]
        # every interval but the newest closes as soon as the next one is in (the newest waits for its grace)
        closing = len(SLICES) * (len({b.created_ns for b in batches}) - 1)
        wait_counts(lambda: combiner.intervals_combined, closing, "the combiner's slice intervals")
        for sink in sinks.values():
            sink.close()
        combiner_intake.stop()
        stop.set()
        for worker in workers:
            worker.join(60)
    return {
        "seconds": seconds,
        "analysis_cpu_seconds": sum(others[1:]),  # the partition processes alone
        "per_partition_cpu_seconds": others[1:],
        "intervals_combined": combiner.intervals_combined,
        "cpu_seconds": cpu + sum(others[1:]),
        "server_cpu_seconds": others[0],
        "windows": sum(w.value for w, _ in counts),
        "per_partition": [w.value for w, _ in counts],
        "prefilled": prefilled,
    }


def wait_counts(count, total: int, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while count() < total:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: {count()} of {total} in {DEADLINE_S:g} s")
        time.sleep(0.002)


def run_http(batches: list[ShipmentBatch], workdir: Path, total: int) -> dict:
    sites = sorted({b.site for b in batches})
    store = WindowStore(default_policies())
    with ApiServer(create_app(store, token=TOKEN), ("::1", 0)) as server:
        sinks = {site: HttpSink(server.url, TOKEN, workdir / f"spool-{site}", backoff=FAST) for site in sites}
        warm_up(sinks, store)
        cpu0, t0 = c.cpu_seconds(), time.perf_counter()
        for batch in batches:
            sinks[batch.site].submit(batch)
        wait_for(store, total)
        seconds = time.perf_counter() - t0
        cpu = c.cpu_seconds() - cpu0
        for sink in sinks.values():
            sink.close()
    return {"seconds": seconds, "cpu_seconds": cpu, "server_cpu_seconds": 0.0, "windows": taken(store)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", type=int, default=20)
    parser.add_argument("--paths", type=int, default=500, help="paths per site")
    parser.add_argument("--intervals", type=int, default=6)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=0, help="also run the bus into N partition processes")
    parser.add_argument(
        "--prefilled", action="store_true", help="the partitions take a stream the sites filled while they were stopped"
    )
    parser.add_argument("--output")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    batches = make_batches(args.sites, args.paths, args.intervals)
    total = sum(len(b.windows) for b in batches)
    rounds: dict[str, list[dict]] = {"bus": [], "http": []}
    if args.partitions:
        rounds["partitioned"] = []
    with tempfile.TemporaryDirectory(prefix="xnetmon-bench-bus-") as tmp:
        root = Path(tmp)
        pki = bus_setup.init(root / "pki")
        for site in sorted({b.site for b in batches}):
            bus_setup.add_site(pki, site)
        for rep in range(args.reps):
            order = tuple(rounds) if rep % 2 == 0 else tuple(reversed(rounds))
            for path in order:
                workdir = root / f"{path}-{rep}"
                if path == "bus":
                    result = run_bus(batches, workdir, pki, total)
                elif path == "http":
                    result = run_http(batches, workdir, total)
                else:
                    result = run_partitioned(batches, workdir, pki, total, args.partitions, args.prefilled)
                result["windows_per_second"] = total / result["seconds"]
                # the machines are shared: CPU seconds (ours and nats-server's) are the steadier figure
                result["windows_per_cpu_second"] = total / (result["cpu_seconds"] + result["server_cpu_seconds"])
                rounds[path].append(result)
    medians = {
        path: {
            key: c.median([r[key] for r in results])
            for key in ("windows_per_second", "windows_per_cpu_second", "seconds", "cpu_seconds", "server_cpu_seconds")
        }
        for path, results in rounds.items()
    }
    bus_over_http = c.ratio(medians["bus"]["windows_per_second"], medians["http"]["windows_per_second"])
    bus_over_http_cpu = c.ratio(medians["bus"]["windows_per_cpu_second"], medians["http"]["windows_per_cpu_second"])
    payload = {
        "benchmark": "bus_intake",
        "environment": c.environment(),
        "parameters": {
            "sites": args.sites,
            "paths": args.paths,
            "intervals": args.intervals,
            "reps": args.reps,
            "partitions": args.partitions,
            "prefilled": args.prefilled,
            "windows_per_rep": total,
        },
        "rounds": rounds,
        "medians": medians,
        "bus_over_http": bus_over_http,
        "bus_over_http_per_cpu_second": bus_over_http_cpu,
        "target": {"what": "bus windows/s >= HTTP windows/s", "met": bool(bus_over_http and bus_over_http >= 1.0)},
    }
    if args.partitions:
        partitioned = medians["partitioned"]["windows_per_second"]
        payload["partitioned_over_bus"] = c.ratio(partitioned, medians["bus"]["windows_per_second"])
        payload["partitioned_target"] = {"what": "partitioned windows/s >= 50,000", "met": partitioned >= 50_000}
        # What the partitions alone could take on this machine's cores, were the publishers and
        # the server elsewhere (as the sites are): windows per CPU second of the partition processes.
        analysis = c.median([r["analysis_cpu_seconds"] for r in rounds["partitioned"]])
        payload["windows_per_partition_cpu_second"] = total / analysis if analysis else None
        # as many cores as partitions, given wholly to them: the rate they would carry
        payload["dedicated_cores_windows_per_second"] = (
            args.partitions * payload["windows_per_partition_cpu_second"] if analysis else None
        )
    path = c.write_result("bus_intake", payload, args.output)
    if not args.quiet:
        rows = [
            [
                name,
                m["windows_per_second"],
                m["windows_per_cpu_second"],
                m["seconds"],
                m["cpu_seconds"],
                m["server_cpu_seconds"],
            ]
            for name, m in medians.items()
        ]
        headers = ["intake", "windows/s", "windows/cpu s", "wall s", "cpu s (this process)", "cpu s (nats-server)"]
        print(c.table(headers, rows))
        print(
            f"bus / http windows/s: {bus_over_http:.2f}, per CPU second: {bus_over_http_cpu:.2f}  "
            f"({total} windows a repetition; result {path})"
        )
        if args.partitions:
            print(
                f"partitioned ({args.partitions}) / bus windows/s: {payload['partitioned_over_bus']:.2f}; "
                f"the partitions alone: {payload['windows_per_partition_cpu_second']:,.0f} windows per CPU second "
                f"({analysis:.2f} CPU s a repetition over {args.partitions}; on {args.partitions} cores of their own "
                f"~{payload['dedicated_cores_windows_per_second']:,.0f} windows/s)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
