"""A three-server JetStream cluster (real nats-server processes, TLS routes) with the stream
replicated three times: synthetic agents publish windows through their BusSinks at a steady
rate, the stream's leader is killed with SIGKILL mid-load and restarted later, and a
BusIntake consumer takes every window once, in order per path, while the stream holds each
once on every node."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections import defaultdict

import pytest

from analyzer.bus_intake import BusIntake
from analyzer.sla.verdicts import default_policies
from analyzer.store.memory import WindowStore
from collector.bus.stream import STREAM_NAME, StreamLimits, replicas_for
from collector.contract.codec import ShipmentParser
from collector.contract.shipment import ShipmentBatch
from collector.outputs.bus_sink import BusSink
from collector.outputs.sinks import Backoff
from tests.analyzer_support import T0, W, window
from tests.bus_support import running_cluster, stream_info, stream_messages
from tests.support import wait_until
from xnetmon import bus_setup

pytestmark = pytest.mark.tool("nats-server")

SITES = ("cnty1a", "cnty2b", "cnty3c", "cnty4d")
TARGETS = ("core", "prov1", "prov2")
TICK_S = 0.04  # the synthetic agents' pace: one batch per site per tick
BEFORE, DURING, AFTER = 20, 10, 20  # intervals published before the kill, at least during, after the restart


class OrderedStore(WindowStore):
    """A WindowStore that notes, per path, the seqs of the windows it was handed, in order."""

    def __init__(self) -> None:
        super().__init__(default_policies())
        self.handed: dict = defaultdict(list)

    def ingest(self, batch, now_ns):
        for w in batch.windows:
            self.handed[w.key].append(w.seq)
        return super().ingest(batch, now_ns)


class SyntheticAgents(threading.Thread):
    """Each site's sink gets one batch of its paths' windows per tick, interval after
    interval, until stopped: a steady load that lasts however long the failover takes."""

    def __init__(self, sinks: dict[str, BusSink]) -> None:
        super().__init__(name="synthetic-agents")
        self.sinks = sinks
        self.intervals = 0  # submitted so far, to every sink
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            seq = T0 + self.intervals
            for site, sink in self.sinks.items():
                windows = tuple(window(seq, source=site, target=t) for t in TARGETS)
                sink.submit(ShipmentBatch(site, windows, created_ns=(seq + 1) * W))
            self.intervals += 1
            time.sleep(TICK_S)  # the load's pace, not a wait for an event


def stream_messages_on(cluster, index: int) -> int:
    """The stream's message count as node `index` holds it (its own replica)."""
    url = cluster.servers[index].monitor_url + "/jsz?accounts=true&streams=true"
    with urllib.request.urlopen(url, timeout=5) as answer:
        page = json.load(answer)
    for account in page.get("account_details", []):
        for stream in account.get("stream_detail", []):
            if stream["name"] == STREAM_NAME:
                return stream["state"]["messages"]
    return -1


def test_a_stream_leader_killed_under_load_loses_no_window(tmp_path):
    with running_cluster(tmp_path, SITES) as (pki, cluster):
        urls = cluster.urls
        store = OrderedStore()
        limits = StreamLimits(replicas=replicas_for(len(urls)))
        sinks = {
            site: BusSink(
                bus_setup.site_endpoint(pki, site, urls), site, tmp_path / f"spool-{site}", backoff=Backoff(0.05, 0.5)
            )
            for site in SITES
        }
        agents = SyntheticAgents(sinks)
        clock = lambda: (T0 + agents.intervals + 1) * W  # noqa: E731
        intake = BusIntake(store, bus_setup.analyzer_endpoint(pki, urls), limits=limits, clock=clock)
        try:
            wait_until(intake.connected.is_set, what="the intake's consumer on the cluster")
            info = stream_info(bus_setup.analyzer_endpoint(pki, urls))
            assert info.config.num_replicas == 3 and len(info.cluster.replicas) == 2
            agents.start()
            ingested = lambda: store.counters["windows_ingested"]  # noqa: E731
            wait_until(lambda: agents.intervals >= BEFORE and ingested() > 0, what="the load under way")
            leader = info.cluster.leader
            victim = next(i for i, node in enumerate(cluster.nodes) if node.name == leader)
            cluster.servers[victim].kill()
            killed_at = agents.intervals
            wait_until(
                lambda: all(T0 + killed_at + DURING in seqs for seqs in list(store.handed.values())),
                what=lambda: f"windows published after the kill taken ({ingested()} windows in all)",
            )
            cluster.servers[victim].start()
            restarted_at = agents.intervals
            wait_until(lambda: agents.intervals >= restarted_at + AFTER, what="the load after the restart")
            agents.halt.set()
            agents.join()
            intervals = agents.intervals
            total = len(SITES) * len(TARGETS) * intervals
            wait_until(lambda: ingested() == total, what=lambda: f"every window in the store ({ingested()}/{total})")
            wait_until(
                lambda: all(stream_messages_on(cluster, i) == len(SITES) * intervals for i in range(3)),
                what=lambda: f"every node's replica whole: {[stream_messages_on(cluster, i) for i in range(3)]}",
            )
            stored = stream_messages(bus_setup.analyzer_endpoint(pki, urls))
        finally:
            agents.halt.set()
            for sink in sinks.values():
                sink.close()
            intake.stop()
        duplicates = sum(s.duplicates_total for s in sinks.values())
        print(
            f"killed {leader} after {killed_at} intervals, restarted after {restarted_at}, {intervals} in all; "
            f"bodies the stream already held: {duplicates}; redelivered windows: {store.counters['windows_duplicate']}"
        )

    assert store.counters["windows_refused_malformed"] == 0
    # the stream: one message a site and interval, each window once, in order per path
    parser = ShipmentParser()
    in_stream: dict = defaultdict(list)
    for _, body, _ in stored:
        for w in parser.parse(body).windows:
            in_stream[w.key].append(w.seq)
    expected = list(range(T0, T0 + intervals))
    assert len(in_stream) == len(SITES) * len(TARGETS)
    assert all(seqs == expected for seqs in in_stream.values())
    # the consumer: each path's windows handed over in order; a redelivery after the failover
    # comes again only as an older seq, which the store drops (counted)
    for key, seqs in store.handed.items():
        assert list(dict.fromkeys(seqs)) == expected, key
    dropped = store.counters["windows_duplicate"] + store.counters["windows_stale"]
    assert dropped == sum(map(len, store.handed.values())) - total
