"""BusIntake against a real nats-server: windows published by a site's BusSink reach the
store, a forged path source or a malformed body is refused and counted, and a restarted
intake resumes from its durable position without taking a window twice."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import nats
import pytest
from prometheus_client import generate_latest

from analyzer.bus_intake import FETCH_BATCH, PULL_BYTES, BusIntake, pull_size
from analyzer.exporter import AnalyzerSnapshot, BusLink, analyzer_registry
from analyzer.sla.verdicts import default_policies
from analyzer.store.memory import WindowStore
from collector.bus.connection import MAX_OUTSTANDING_PINGS, PING_INTERVAL_S, TLS_SHUTDOWN_TIMEOUT_S
from collector.bus.subjects import message_id, subject
from collector.contract.codec import encode_body
from collector.contract.shipment import ShipmentBatch
from collector.outputs.bus_sink import BusSink
from collector.outputs.sinks import Backoff
from tests.analyzer_support import T0, W, health, observation, window
from tests.bus_support import client_connections, connect_options, create_stream, frozen, running_bus, running_servers
from tests.support import wait_until
from xnetmon import bus_setup

pytestmark = pytest.mark.tool("nats-server")


@pytest.fixture
def bus(tmp_path):
    with running_bus(tmp_path) as running:
        yield running


def intake_for(bus, store: WindowStore, durable: str = "analyzer", **options) -> BusIntake:
    pki, server = bus
    intake = BusIntake(
        store, bus_setup.analyzer_endpoint(pki, (server.url,)), durable, clock=lambda: (T0 + 5) * W, **options
    )
    wait_until(intake.connected.is_set, what="the intake's consumer")
    return intake


def publish_as(bus, site: str, on_site: str, body: bytes) -> None:
    """Publish `body` with `site`'s certificate on `on_site`'s windows subject."""
    pki, server = bus

    async def publish() -> None:
        client = await nats.connect(**connect_options(bus_setup.site_endpoint(pki, site, (server.url,))))
        try:
            name = subject("windows", on_site)
            await client.jetstream().publish(name, body, headers={"Nats-Msg-Id": message_id("windows", site, body)})
        finally:
            await client.close()

    asyncio.run(publish())


def test_a_sites_windows_reach_the_store_through_the_bus(bus, tmp_path):
    pki, server = bus
    store = WindowStore(default_policies())
    intake = intake_for(bus, store)
    sink = BusSink(
        bus_setup.site_endpoint(pki, "cnty1a", (server.url,)), "cnty1a", tmp_path / "spool", backoff=Backoff(0.05, 0.2)
    )
    windows = tuple(window(T0 + i, target=t) for i in range(3) for t in ("core", "cnty2b"))
    sink.submit(ShipmentBatch("cnty1a", windows, (observation(),), health(), created_ns=T0 * W))
    wait_until(lambda: store.counters["windows_ingested"] == 6, what="the windows in the store")
    wait_until(lambda: store.observations() and store.agents(), what="observation and health in the store")
    sink.close()
    intake.stop()
    assert store.agents()[0].health == health()
    assert store.counters["windows_duplicate"] == 0 and intake.errors_total == 0


def test_a_forged_path_source_on_the_sites_own_subject_is_refused_and_counted(bus):
    store = WindowStore(default_policies())
    intake = intake_for(bus, store)
    forged = encode_body(ShipmentBatch("cnty1a", (window(T0, source="cnty2b"), window(T0 + 1, source="cnty2b"))))
    publish_as(bus, "cnty1a", "cnty1a", forged)
    publish_as(bus, "cnty1a", "cnty1a", b'{"site": "cnty1a", "windows": [{"seq": "x"}]}')
    forged_health = encode_body(ShipmentBatch("cnty1a", (), health=health("cnty2b")))
    publish_as(bus, "cnty1a", "cnty1a", forged_health)
    honest = encode_body(ShipmentBatch("cnty1a", (window(T0),)))
    publish_as(bus, "cnty1a", "cnty1a", honest)
    wait_until(lambda: store.counters["windows_ingested"] == 1, what="the honest window in the store")
    intake.stop()
    assert store.counters["windows_refused_source_mismatch"] == 2
    assert store.counters["windows_refused_malformed"] == 1
    assert [k.source for k in store.path_keys()] == ["cnty1a"]
    assert [agent.health for agent in store.agents()] == [None]  # the forged health never landed
    text = generate_latest(analyzer_registry(lambda: AnalyzerSnapshot(counters=store.stats()))).decode()
    assert 'xnet_analyzer_windows_refused_total{reason="source-mismatch"} 2.0' in text
    assert 'xnet_analyzer_windows_refused_total{reason="malformed"} 1.0' in text


def test_a_restarted_intake_restores_its_checkpoint_and_resumes_after_it(bus):
    store = WindowStore(default_policies())
    intake = intake_for(bus, store)
    publish_as(bus, "cnty1a", "cnty1a", encode_body(ShipmentBatch("cnty1a", (window(T0),))))
    wait_until(lambda: store.counters["windows_ingested"] == 1, what="the first window")
    intake.stop()  # with its last checkpoint
    assert intake.checkpoints_total == 1 and intake.checkpoint_failures == 0
    publish_as(bus, "cnty1a", "cnty1a", encode_body(ShipmentBatch("cnty1a", (window(T0 + 1),))))
    fresh = WindowStore(default_policies())
    intake = intake_for(bus, fresh)
    assert intake.restored_seq == 1  # the checkpoint covered the first message
    wait_until(lambda: fresh.counters["windows_ingested"] == 2, what="the window published meanwhile")
    intake.stop()
    assert [w.seq for w in fresh.recent_windows(fresh.path_keys()[0])] == [T0, T0 + 1]
    assert fresh.counters["windows_duplicate"] == 0  # the checkpointed message was not delivered again


def test_windows_taken_after_the_last_checkpoint_are_taken_again_after_a_restart(bus):
    store = WindowStore(default_policies())
    intake = intake_for(bus, store, checkpoint_every_s=3600)
    publish_as(bus, "cnty1a", "cnty1a", encode_body(ShipmentBatch("cnty1a", (window(T0),))))
    wait_until(lambda: store.counters["windows_ingested"] == 1, what="the first window")
    intake.stop()
    publish_as(bus, "cnty1a", "cnty1a", encode_body(ShipmentBatch("cnty1a", (window(T0 + 1),))))
    second = WindowStore(default_policies())
    intake = intake_for(bus, second, checkpoint_every_s=3600)
    wait_until(lambda: second.counters["windows_ingested"] == 2, what="the second window")
    intake._loop.call_soon_threadsafe(intake._task.cancel)  # as if killed: no last checkpoint
    intake._thread.join(10)  # while its consumer has acked seq 2
    third = WindowStore(default_policies())
    intake = intake_for(bus, third)
    assert intake.restored_seq == 1
    wait_until(lambda: third.counters["windows_ingested"] == 2, what="the window acked after the checkpoint")
    intake.stop()
    assert [w.seq for w in third.recent_windows(third.path_keys()[0])] == [T0, T0 + 1]


def test_intervals_the_bus_was_away_for_are_judged_with_their_windows_once_it_returns(bus, tmp_path):
    """While nats-server is down the site's windows wait in its spool: the store must not
    close those intervals by time as empty (their windows would come late, into no slice
    verdict), but judge each with its windows once the spool drains."""
    pki, server = bus
    now = [(T0 + 3) * W]
    store = WindowStore(default_policies(), interval_s=W / 1e9, catch_up_s=0, stall_intervals=5)
    intake = BusIntake(store, bus_setup.analyzer_endpoint(pki, (server.url,)), clock=lambda: now[0])
    wait_until(intake.connected.is_set, what="the intake's consumer")
    sink = BusSink(
        bus_setup.site_endpoint(pki, "cnty1a", (server.url,)), "cnty1a", tmp_path / "spool", backoff=Backoff(0.05, 0.2)
    )
    targets = ("core", "cnty2b")

    def ship(seqs: range) -> None:
        for seq in seqs:
            sink.submit(ShipmentBatch("cnty1a", tuple(window(seq, target=t) for t in targets), created_ns=seq * W))

    ship(range(T0, T0 + 3))
    wait_until(lambda: store.counters["windows_ingested"] == 6, what="the windows before the outage")
    server.stop()
    wait_until(lambda: intake.disconnections_total == 1, what="the intake to see the bus go")
    now[0] = (T0 + 20) * W  # far beyond the grace and the shared-stall wait
    store.advance(now[0])
    ship(range(T0 + 3, T0 + 18))
    wait_until(lambda: sink.spool_depth == 30, what="the windows spooled at the site")
    server.start()
    wait_until(lambda: store.counters["windows_ingested"] == 36, what="the spooled windows")
    sink.close()
    intake.stop()
    assert store.counters["windows_late"] == 0
    verdict = store.slice_verdict("video", now[0])
    assert verdict.intervals == 18  # every interval, each with its windows


def test_a_frozen_server_is_noticed_within_its_pings_and_intervals_wait_for_it(bus):
    """A SIGSTOP'd nats-server keeps its sockets open and answers nothing: only the client's
    pings tell. The intake must see it go within the pings' bound, long before nats-py's
    default (up to 6 min), show it on /metrics, and have the store stop closing by time."""
    pki, server = bus
    now = [(T0 + 3) * W]
    store = WindowStore(default_policies(), interval_s=W / 1e9, catch_up_s=0)
    endpoint = bus_setup.analyzer_endpoint(pki, (server.url,))
    intake = BusIntake(store, endpoint, clock=lambda: now[0], reconnect_catch_up_s=0)
    wait_until(intake.connected.is_set, what="the intake's consumer")
    store.ingest(ShipmentBatch("cnty1a", tuple(window(seq) for seq in range(T0, T0 + 3))), now[0])
    registry = analyzer_registry(lambda: AnalyzerSnapshot(bus=intake.link()))
    assert "xnet_analyzer_bus_connected 1.0" in generate_latest(registry).decode()
    bound_s = PING_INTERVAL_S * (MAX_OUTSTANDING_PINGS + 1) + 5  # the pings, a pull's wait, a loaded machine
    assert server.pid is not None
    frozen_at = time.monotonic()
    os.kill(server.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: intake.disconnections_total == 1, timeout=bound_s + 60, what="the frozen server noticed")
        noticed_s = time.monotonic() - frozen_at
        text = generate_latest(registry).decode()
        # the intervals of the outage stay open however late it is: their windows are late, not missing
        before = store.closed_through()
        now[0] = (T0 + 30) * W
        store.advance(now[0])
        assert store.closed_through() == before
    finally:
        os.kill(server.pid, signal.SIGCONT)
    assert noticed_s < bound_s, f"noticed after {noticed_s:.1f} s"
    assert "xnet_analyzer_bus_connected 0.0" in text and "xnet_analyzer_bus_disconnections_total 1.0" in text
    wait_until(lambda: intake.link() == BusLink(True, 1), what="the intake back on the thawed server")
    store.advance(now[0])  # no catch-up asked for: closing by time goes on at once
    intake.stop()
    assert all(store.closed_through()[name] > before[name] for name in before)


def test_an_intake_leaves_a_frozen_server_for_the_next_within_seconds(tmp_path):
    """Over TLS, leaving a frozen server waits for its close_notify: TLS_SHUTDOWN_TIMEOUT_S in
    the intake's loop, where asyncio's 30 s kept it from the next server for ~40 s."""
    with running_servers(tmp_path, 2) as (pki, servers):
        urls = tuple(s.url for s in servers)
        for url in urls:
            create_stream(bus_setup.analyzer_endpoint(pki, (url,)))
        store = WindowStore(default_policies())
        endpoint = bus_setup.analyzer_endpoint(pki, urls)
        intake = BusIntake(store, endpoint, clock=lambda: (T0 + 5) * W)
        wait_until(intake.connected.is_set, what="the intake's consumer")
        wait_until(lambda: sorted(client_connections(s) for s in servers) == [0, 1], what="one connection")
        serving = next(s for s in servers if client_connections(s) == 1)
        with frozen(serving):
            started = time.monotonic()
            wait_until(lambda: intake.link() == BusLink(True, 1), timeout=120, what="the intake on the next server")
            took_s = time.monotonic() - started
        intake.stop()
    pings_s = PING_INTERVAL_S * (MAX_OUTSTANDING_PINGS + 1)
    bound_s = pings_s + TLS_SHUTDOWN_TIMEOUT_S + endpoint.connect_timeout_s + 8.0  # a pull's wait, load
    assert bound_s < 2 * PING_INTERVAL_S + 30.0  # asyncio's own TLS close would not fit
    assert took_s < bound_s, f"on the next server after {took_s:.1f} s"


def test_each_replica_consumer_sees_every_window(bus):
    first, second = WindowStore(default_policies()), WindowStore(default_policies())
    intakes = [intake_for(bus, first, "analyzer-a"), intake_for(bus, second, "analyzer-b")]
    publish_as(bus, "cnty2b", "cnty2b", encode_body(ShipmentBatch("cnty2b", (window(T0, source="cnty2b"),))))
    for store in (first, second):
        wait_until(lambda store=store: store.counters["windows_ingested"] == 1, what="the window in each replica")
    for intake in intakes:
        intake.stop()


def test_partitions_split_the_sites_between_their_consumers(tmp_path):
    sites = tuple(f"site{i}" for i in range(8))
    with running_bus(tmp_path, sites, partitions=2) as (pki, server):
        stores = [WindowStore(default_policies()), WindowStore(default_policies())]
        intakes = [intake_for((pki, server), store, f"p{i}", partition=i) for i, store in enumerate(stores)]
        sinks = [
            BusSink(
                bus_setup.site_endpoint(pki, site, (server.url,)), site, tmp_path / site, backoff=Backoff(0.05, 0.2)
            )
            for site in sites
        ]
        for site, sink in zip(sites, sinks, strict=True):
            sink.submit(ShipmentBatch(site, (window(T0, source=site), window(T0 + 1, source=site))))
        wait_until(
            lambda: sum(s.counters["windows_ingested"] for s in stores) == 2 * len(sites),
            what="every site's windows in one partition or the other",
        )
        for sink in sinks:
            sink.close()
        for intake in intakes:
            intake.stop()
    held = [{k.source for k in store.path_keys()} for store in stores]
    assert held[0] and held[1] and not held[0] & held[1] and held[0] | held[1] == set(sites)
    assert all(store.counters["windows_refused_malformed"] == 0 for store in stores)


def test_a_pull_asks_for_fewer_messages_when_they_are_large():
    class Message:
        def __init__(self, size: int) -> None:
            self.data = bytes(size)

    assert pull_size([Message(2_000)]) == FETCH_BATCH  # a site's body of a few windows
    assert pull_size([Message(1_000), Message(400_000)]) == PULL_BYTES // 400_000  # 500 windows a body
    assert pull_size([Message(8 << 20)]) == 1
    assert pull_size([]) == FETCH_BATCH


@pytest.mark.parametrize("final_checkpoint", [True, False])
def test_a_stopped_intake_and_its_store_are_collected(bus, final_checkpoint):
    """The lab all-in-one restarts its analyzer inside one process (a crash-like stop too):
    nothing of the connection, its loop or its thread may keep the old store."""
    import gc
    import weakref

    store = WindowStore(default_policies())
    intake = intake_for(bus, store)
    intake.stop(final_checkpoint=final_checkpoint)
    gone, store_gone = weakref.ref(intake), weakref.ref(store)
    del intake, store
    gc.collect()
    assert gone() is None and store_gone() is None
