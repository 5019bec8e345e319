#!/usr/bin/env python3
"""nats-server at the national shape: SITES sites (2,800) each publishing its paths' windows
(4 slices x 6 targets = 24 windows, one body, as BusSink sends them) at every WINDOW boundary
(1 s) and its health every 10 windows, into the XNET stream; one server, then a three-server
cluster with the stream R3, in one run. Measured from /proc over the steady part of the
load: each server's resident memory (VmRSS at the end, VmHWM) and CPU (utime + stime over
the wall time, in cores), with the messages and bytes the stream acknowledged per second
against those offered and the publishers' ack latency.

Publishers: PROCESSES processes, each holding one TLS connection per site with that site's
own certificate (2,800 connections, as 2,800 agents would; not multiplexed identities), all
publishing at the wall clock's boundary like agents whose windows close together, each
waiting for its ack before its next body (BusSink's order). A site's body is encoded once by
the contract's codec and sent each interval under a new message id: the server stores it as
a new message (it never parses bodies). No consumer reads meanwhile: the figures are the
server's intake and storage, the analyzers' reads come on top (they are the size of the
intake again per replica pair).

The stream's byte limit is --max-bytes per run (1 GiB: the disk of a shared machine), so the
steady state of a full stream (discarding the oldest) is part of what is measured.

    .venv/bin/python bench/bus_national.py                          # 2,800 sites, 1 s, 30 s measured
    .venv/bin/python bench/bus_national.py --sites 20 --seconds 3 --warm 1 --processes 1
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import _common as c

from collector.bus.connection import run_on_bus_loop
from collector.bus.stream import StreamLimits, stream_config
from collector.bus.subjects import subject
from collector.contract.codec import encode_body
from collector.contract.examples import example_health, example_window
from collector.contract.records import PathKey
from collector.contract.shipment import ShipmentBatch
from xnetmon import bus_setup
from xnetmon.nats_server import NatsCluster, NatsServer

SLICES = ("video", "egov", "data", "best-effort")
HEALTH_EVERY = 10  # windows between a site's health reports
DEADLINE_S = 600.0


def site_name(i: int) -> str:
    return f"cnty{i:04d}"


def bodies(site: str, paths: int, window_ns: int) -> tuple[bytes, bytes]:
    """(its windows body, its health body), encoded by the contract's codec."""
    seq = time.time_ns() // window_ns
    windows = tuple(
        example_window(PathKey(site, f"target{p:02d}", SLICES[p % len(SLICES)], "stamp"), seq, interval_ns=window_ns)
        for p in range(paths)
    )
    return encode_body(ShipmentBatch(site, windows)), encode_body(ShipmentBatch(site, (), health=example_health(site)))


def publisher(pki: Path, urls: tuple[str, ...], sites: list[str], args, ready, start_at, stop, results) -> None:
    """One process: a connection per site, a body per site at every boundary until `stop`."""
    run_on_bus_loop(_publish(pki, urls, sites, args, ready, start_at, stop, results))


async def _publish(pki, urls, sites, args, ready, start_at, stop, results) -> None:
    import nats

    window_ns = round(args.window * 1e9)
    encoded = {site: bodies(site, args.paths, window_ns) for site in sites}
    clients = {}
    for site in sites:
        options = bus_setup.site_endpoint(pki, site, urls).connect_options()
        clients[site] = await nats.connect(**options | {"connect_timeout": 60})
    streams = {site: client.jetstream(timeout=30) for site, client in clients.items()}
    ready.release()
    while start_at.value == 0:
        await asyncio.sleep(0.01)
    counts = {"published": 0, "acked": 0, "failed": 0, "bytes": 0}
    latencies: list[float] = []

    async def one(site: str, tick: int) -> None:
        windows, health = encoded[site]
        for kind, body in (
            (("windows", windows), ("health", health)) if tick % HEALTH_EVERY == 0 else (("windows", windows),)
        ):
            counts["published"] += 1
            began = time.perf_counter()
            try:
                await streams[site].publish(subject(kind, site), body, headers={"Nats-Msg-Id": f"{site}:{kind}:{tick}"})
            except Exception:
                counts["failed"] += 1
                continue
            latencies.append(time.perf_counter() - began)
            counts["acked"] += 1
            counts["bytes"] += len(body)

    tick = 0
    boundary = start_at.value
    while not stop.is_set():
        await asyncio.sleep(max(0.0, boundary - time.time()))  # the windows' close: the load's pace
        measuring = args.warm <= boundary - start_at.value < args.warm + args.seconds
        before, mark = dict(counts), len(latencies)
        await asyncio.gather(*(one(site, tick) for site in sites))
        if measuring:
            results.put(("tick", {k: counts[k] - before[k] for k in counts}, latencies[mark:]))
        tick += 1
        boundary += args.window
        while boundary < time.time():  # a round that overran its interval skips the boundaries it missed
            boundary += args.window
    for client in clients.values():
        await client.close()
    results.put(("done", None, None))


def proc_figures(pid: int) -> tuple[float, int, int]:
    """(CPU seconds so far, VmRSS bytes, VmHWM bytes) of a process."""
    cpu = c.cpu_seconds(pid)
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return cpu, int(status["VmRSS"].split()[0]) * 1024, int(status["VmHWM"].split()[0]) * 1024


def create_stream(pki: Path, urls: tuple[str, ...], limits: StreamLimits) -> None:
    import nats

    async def create() -> None:
        client = await nats.connect(**bus_setup.analyzer_endpoint(pki, urls).connect_options())
        try:
            await client.jetstream(timeout=30).add_stream(stream_config(limits))
        finally:
            await client.close()

    run_on_bus_loop(create())


def run_mode(mode: str, pki: Path, workdir: Path, args) -> dict:
    sites = [site_name(i) for i in range(args.sites)]
    if mode == "single":
        servers = [NatsServer(pki, workdir / "server")]
        running: NatsServer | NatsCluster = servers[0]
    else:
        running = NatsCluster(pki, workdir / "cluster", 3)
        servers = running.servers
    urls = tuple(s.url for s in servers)
    context = multiprocessing.get_context("spawn")
    ready, stop, results = context.Semaphore(0), context.Event(), context.Queue()
    start_at = context.Value("d", 0.0)
    workers = []
    try:
        create_stream(pki, urls, StreamLimits(max_bytes=args.max_bytes, replicas=1 if mode == "single" else 3))
        share = [sites[i :: args.processes] for i in range(args.processes)]
        workers = [
            context.Process(target=publisher, args=(pki, urls, part, args, ready, start_at, stop, results))
            for part in share
            if part
        ]
        for worker in workers:
            worker.start()
        for _ in workers:
            if not ready.acquire(timeout=DEADLINE_S):
                raise RuntimeError("a publisher process did not connect its sites")
        pids = [s.pid for s in servers]
        start_at.value = float(int(time.time()) + 1)
        time.sleep(max(0.0, start_at.value + args.warm - time.time()))  # the steady part's start
        before = [proc_figures(pid) for pid in pids]
        publishers_before = sum(proc_figures(w.pid)[0] for w in workers)
        t0 = time.perf_counter()
        time.sleep(args.seconds)  # the measured span: this is the duration under test
        wall = time.perf_counter() - t0
        after = [proc_figures(pid) for pid in pids]
        publishers_cpu = sum(proc_figures(w.pid)[0] for w in workers) - publishers_before
        stop.set()
        ticks, latencies, done = [], [], 0
        deadline = time.monotonic() + DEADLINE_S
        while done < len(workers) and time.monotonic() < deadline:
            what, counts, lat = results.get(timeout=DEADLINE_S)
            if what == "done":
                done += 1
            else:
                ticks.append(counts)
                latencies.extend(lat)
        for worker in workers:
            worker.join(60)
    finally:
        stop.set()
        for worker in workers:
            if worker.is_alive():
                worker.kill()
        running.stop()
    total = {k: sum(t[k] for t in ticks) for k in ("published", "acked", "failed", "bytes")}
    messages_offered = args.sites * args.seconds / args.window * (1 + 1 / HEALTH_EVERY)
    return {
        "servers": [
            {
                "cpu_cores": (a[0] - b[0]) / wall,
                "rss_mb": a[1] / 1e6,
                "hwm_mb": a[2] / 1e6,
            }
            for b, a in zip(before, after, strict=True)
        ],
        "cpu_cores": sum(a[0] - b[0] for b, a in zip(before, after, strict=True)) / wall,
        "rss_mb": sum(a[1] for a in after) / 1e6,
        "publishers_cpu_cores": publishers_cpu / wall,
        "messages_offered_per_s": messages_offered / args.seconds,
        "messages_acked_per_s": total["acked"] / args.seconds,
        "mb_acked_per_s": total["bytes"] / args.seconds / 1e6,
        "failed": total["failed"],
        "ack_p50_ms": c.percentile(latencies, 50) * 1e3 if latencies else None,
        "ack_p99_ms": c.percentile(latencies, 99) * 1e3 if latencies else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", type=int, default=2800)
    parser.add_argument("--paths", type=int, default=24, help="windows per site and interval")
    parser.add_argument("--window", type=float, default=1.0, help="seconds between a site's bodies")
    parser.add_argument("--seconds", type=float, default=30.0, help="the measured span")
    parser.add_argument("--warm", type=float, default=10.0, help="seconds of load before it")
    parser.add_argument("--processes", type=int, default=4, help="publisher processes sharing the sites")
    parser.add_argument("--max-bytes", type=int, default=1 << 30, help="the stream's byte limit in this run")
    parser.add_argument("--modes", default="single,cluster")
    parser.add_argument("--output")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="xnetmon-bench-national-") as tmp:
        root = Path(tmp)
        pki = bus_setup.init(root / "pki")
        bus_setup.add_sites(pki, [site_name(i) for i in range(args.sites)])
        for mode in args.modes.split(","):
            results[mode] = run_mode(mode, pki, root / mode, args)
    body_bytes = len(bodies(site_name(0), args.paths, round(args.window * 1e9))[0])
    offered_mb = args.sites * body_bytes / args.window / 1e6
    payload = {
        "benchmark": "bus_national",
        "environment": c.environment(),
        "parameters": {
            "sites": args.sites,
            "paths": args.paths,
            "window_s": args.window,
            "seconds": args.seconds,
            "warm_s": args.warm,
            "processes": args.processes,
            "max_bytes": args.max_bytes,
            "windows_body_bytes": body_bytes,
            "offered_mb_per_s": offered_mb,
        },
        "modes": results,
    }
    path = c.write_result("bus_national", payload, args.output)
    if not args.quiet:
        rows = [
            [
                mode,
                r["messages_offered_per_s"],
                r["messages_acked_per_s"],
                r["mb_acked_per_s"],
                r["cpu_cores"],
                r["rss_mb"],
                max(s["hwm_mb"] for s in r["servers"]),
                r["ack_p50_ms"],
                r["ack_p99_ms"],
                r["publishers_cpu_cores"],
            ]
            for mode, r in results.items()
        ]
        headers = ["bus", "msg/s offered", "msg/s acked", "MB/s acked", "server cores", "server RSS MB"]
        headers += ["max HWM MB", "ack p50 ms", "ack p99 ms", "publishers cores"]
        print(c.table(headers, rows))
        print(
            f"{args.sites} sites, a {body_bytes} B body each every {args.window:g} s ({offered_mb:.1f} MB/s); "
            f"result {path}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
