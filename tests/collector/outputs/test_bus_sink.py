"""BusSink against a real nats-server with TLS and per-site certificates: windows stored once
even when sent again, delivered exactly once and in order across a bus outage, and a site's
identity confined to its own subjects by the server."""

from __future__ import annotations

import asyncio
import threading
import time
import zlib

import nats
import pytest

from collector.bus.connection import MAX_OUTSTANDING_PINGS, PING_INTERVAL_S, TLS_SHUTDOWN_TIMEOUT_S, BusEndpoint
from collector.bus.subjects import message_id, subject
from collector.contract.codec import ShipmentParser, encode_body
from collector.contract.shipment import ShipmentBatch
from collector.outputs.bus_sink import BusSink
from collector.outputs.sinks import Backoff
from collector.outputs.spool import WindowSpool
from tests.analyzer.insitu.insitu_support import PATH, path_blocks
from tests.analyzer_support import W, health, observation, window
from tests.bus_support import (
    client_connections,
    connect_options,
    create_stream,
    frozen,
    running_bus,
    running_servers,
    stream_messages,
)
from tests.support import wait_until
from xnetmon import bus_setup

pytestmark = pytest.mark.tool("nats-server")

FAST = Backoff(initial_s=0.05, cap_s=0.2)


def batch(*seqs: int, site: str = "cnty1a", **extra) -> ShipmentBatch:
    windows = tuple(window(s, source=site, target=t) for s in seqs for t in ("core", "cnty2b"))
    return ShipmentBatch(site, windows, created_ns=seqs[0] * W if seqs else 0, **extra)


@pytest.fixture
def bus(tmp_path):
    with running_bus(tmp_path) as (pki, server):
        create_stream(bus_setup.analyzer_endpoint(pki, (server.url,)))
        yield pki, server


def sink_for(bus, tmp_path, site: str = "cnty1a", name: str = "spool", **options) -> BusSink:
    pki, server = bus
    return BusSink(bus_setup.site_endpoint(pki, site, (server.url,)), site, tmp_path / name, backoff=FAST, **options)


def windows_in_stream(bus: tuple) -> list[tuple[str, int]]:
    """(path target, seq) of every window in the stream, in stream order."""
    pki, server = bus
    parser = ShipmentParser()
    found = []
    for name, body, _ in stream_messages(bus_setup.analyzer_endpoint(pki, (server.url,))):
        if name.startswith("xnet.windows."):
            found += [(w.key.target, w.seq) for w in parser.parse(body).windows]
    return found


def test_windows_observations_and_health_go_to_their_subjects(bus, tmp_path):
    sink = sink_for(bus, tmp_path)
    sink.submit(batch(1, 2, observations=(observation(),), health=health()))
    wait_until(lambda: sink.delivered_total == 4 and sink.spool_depth == 0, what="the batch published")
    sink.close()
    pki, server = bus
    messages = stream_messages(bus_setup.analyzer_endpoint(pki, (server.url,)))
    assert [m[0] for m in messages] == ["xnet.windows.cnty1a", "xnet.observations.cnty1a", "xnet.health.cnty1a"]
    windows, observations, health_only = (ShipmentParser().parse(body) for _, body, _ in messages)
    assert len(windows.windows) == 4 and not windows.observations and windows.health is None
    assert observations.observations == (observation(),) and not observations.windows
    assert health_only.health == health() and not health_only.windows
    kinds = ("windows", "observations", "health")
    assert [m[2] for m in messages] == [message_id(k, "cnty1a", m[1]) for k, m in zip(kinds, messages, strict=True)]


def test_in_situ_blocks_ride_once_with_the_first_body_or_alone_with_the_health(bus, tmp_path):
    blocks = tuple(path_blocks([[1000, 1000]], points=PATH[:1]))
    sink = sink_for(bus, tmp_path)
    sink.submit(batch(1, observations=(observation(),), health=health(), marked_blocks=blocks))
    sink.submit(ShipmentBatch("cnty1a", (), (), health(), 3 * W, blocks[1:]))  # the agent's blocks-only shipment
    wait_until(lambda: sink.delivered_total == 2 and sink.spool_depth == 0, what="both batches published")
    sink.close()
    pki, server = bus
    messages = stream_messages(bus_setup.analyzer_endpoint(pki, (server.url,)))
    parsed = [(name, ShipmentParser().parse(body).marked_blocks) for name, body, _ in messages]
    assert parsed == [
        ("xnet.windows.cnty1a", blocks),
        ("xnet.observations.cnty1a", ()),
        ("xnet.health.cnty1a", ()),
        ("xnet.health.cnty1a", blocks[1:]),
    ]


def test_a_body_sent_again_is_stored_once(bus, tmp_path):
    """Two sinks sending the very same body stand for a re-send after a lost ack."""
    first, again = sink_for(bus, tmp_path, name="a"), sink_for(bus, tmp_path, name="b")
    for sink in (first, again):
        sink.submit(batch(5))
        wait_until(lambda sink=sink: sink.delivered_total == 2, what="the body acknowledged")
        sink.close()
    assert (first.duplicates_total, again.duplicates_total) == (0, 1)
    assert windows_in_stream(bus) == [("core", 5), ("cnty2b", 5)]


def test_bus_outage_during_publishing_loses_nothing_and_repeats_nothing(bus, tmp_path):
    """The server stopped and started again while batches keep coming: every window is in the
    stream exactly once, in order per path."""
    _, server = bus
    sink = sink_for(bus, tmp_path, timeout_s=1.0)
    seqs = range(1, 41)
    submitted = threading.Event()

    def publish() -> None:
        for seq in seqs:
            sink.submit(batch(seq))
            time.sleep(0.05)  # the agent's pace: one batch per interval, scaled down
        submitted.set()

    thread = threading.Thread(target=publish)
    thread.start()
    wait_until(lambda: sink.delivered_total >= 10, what="some batches delivered before the outage")
    server.stop()
    wait_until(lambda: sink.spool_depth >= 10, what="batches spooled while the bus is away")
    server.start()
    thread.join()
    wait_until(lambda: submitted.is_set() and sink.delivered_total == 2 * len(seqs), what="every window delivered")
    sink.close()
    stored = windows_in_stream(bus)
    assert len(stored) == len(set(stored)) == 2 * len(seqs)
    for target in ("core", "cnty2b"):
        assert [seq for t, seq in stored if t == target] == list(seqs)
    assert sink.dropped_total == 0


def test_a_site_cannot_publish_on_another_sites_subject(bus):
    pki, server = bus
    errors: list[str] = []

    async def forge() -> None:
        endpoint = bus_setup.site_endpoint(pki, "cnty1a", (server.url,))
        client = await nats.connect(**connect_options(endpoint, errors))
        try:
            body = encode_body(batch(3, site="cnty2b"))
            with pytest.raises(nats.errors.TimeoutError):
                await client.jetstream().publish(subject("windows", "cnty2b"), body, timeout=1.0)
        finally:
            await client.close()

    asyncio.run(forge())
    assert any("permissions violation for publish" in e.lower() and "xnet.windows.cnty2b" in e for e in errors), errors
    assert windows_in_stream(bus) == []


def test_the_bound_holds_while_the_bus_is_away(tmp_path):
    """No server at all: windows wait in the spool up to its bound, the rest counted dropped."""
    pki = bus_setup.init(tmp_path / "pki")
    bus_setup.add_site(pki, "cnty1a")
    endpoint = bus_setup.site_endpoint(pki, "cnty1a", ("tls://127.0.0.1:9",))
    sink = BusSink(endpoint, "cnty1a", tmp_path / "spool", max_windows=6, backoff=FAST, timeout_s=0.2)
    for seq in range(1, 6):
        sink.submit(batch(seq))
    wait_until(lambda: sink.dropped_total == 4, what="the oldest windows dropped at the bound")
    assert sink.spool_depth == 6 and sink.delivered_total == 0
    sink.close(timeout=0.5)


def test_each_spooled_body_keeps_its_kind_and_blocks_so_sending_parses_nothing(tmp_path):
    """The shipping thread used to parse every body without windows to pick its subject."""
    pki = bus_setup.init(tmp_path / "pki")
    bus_setup.add_site(pki, "cnty1a")
    endpoint = bus_setup.site_endpoint(pki, "cnty1a", ("tls://127.0.0.1:9",))  # no server: all stays spooled
    blocks = tuple(path_blocks([[1000, 1000]], points=PATH[:1]))
    sink = BusSink(endpoint, "cnty1a", tmp_path / "spool", backoff=FAST, timeout_s=0.2)
    sink.submit(batch(1, observations=(observation(),), health=health(), marked_blocks=blocks))
    sink.submit(ShipmentBatch("cnty1a", (), (), health(), 3 * W, blocks[1:]))
    sink.close(timeout=0.5)
    found = []
    with WindowSpool(tmp_path / "spool", 100) as spool:
        while spool.head() is not None:
            found.append((spool.head_kind, spool.head_windows))
            spool.pop_head()
        assert spool.dropped_blocks_total == 0
    assert found == [("windows", 2), ("observations", 0), ("health", 0), ("health", 0)]


def test_a_body_an_older_agent_spooled_without_a_kind_goes_to_its_subject(bus, tmp_path):
    body = encode_body(ShipmentBatch("cnty1a", (), (observation(),), None, 2 * W))
    line = b'{"id":0,"windows":0,"crc32":%d,"batch":%s}\n' % (zlib.crc32(body), body)
    (tmp_path / "spool").mkdir()
    (tmp_path / "spool" / f"{0:020d}.jsonl").write_bytes(line)
    sink = sink_for(bus, tmp_path)
    pki, server = bus
    analyzer = bus_setup.analyzer_endpoint(pki, (server.url,))
    wait_until(lambda: stream_messages(analyzer), what="the old body published")
    sink.close()
    assert [m[0] for m in stream_messages(analyzer)] == ["xnet.observations.cnty1a"]


def test_a_site_name_that_is_no_subject_token_is_refused(tmp_path):
    endpoint = BusEndpoint(("nats://127.0.0.1:9",), "x")
    with pytest.raises(ValueError, match="subject token"):
        BusSink(endpoint, "cnty.1a", tmp_path / "spool")
    assert not (tmp_path / "spool").exists() or not any((tmp_path / "spool").iterdir())


def test_a_site_unknown_to_the_server_waits_in_its_spool_until_the_server_knows_it(bus, tmp_path):
    """Its certificate is from the bus's CA but the server has no permissions for it yet:
    refused; once the operator adds it and the server reloads, the spooled windows go."""
    pki, server = bus
    bus_setup.add_site(pki, "cnty3c")  # written after the server started: not in its configuration
    sink = sink_for(bus, tmp_path, site="cnty3c", timeout_s=0.5)
    sink.submit(batch(7, site="cnty3c"))
    wait_until(lambda: sink.server_errors_total > 0, what="the server refusing the unknown site")
    assert sink.delivered_total == 0 and sink.spool_depth == 2
    server.reload()
    wait_until(lambda: sink.delivered_total == 2, what="the spooled windows delivered after the reload")
    sink.close()
    assert windows_in_stream(bus) == [("core", 7), ("cnty2b", 7)]


def test_a_sink_leaves_a_frozen_server_for_the_next_within_seconds(tmp_path):
    """Its server frozen (SIGSTOP: the sockets stay open, nothing answers), the sink's publish
    goes unanswered, its pings leave the server, the TLS close waits TLS_SHUTDOWN_TIMEOUT_S
    for a close_notify, not asyncio's 30 s, and the body goes to the next server."""
    with running_servers(tmp_path, 2) as (pki, servers):
        for server in servers:
            create_stream(bus_setup.analyzer_endpoint(pki, (server.url,)))
        endpoint = bus_setup.site_endpoint(pki, "cnty1a", tuple(s.url for s in servers))
        sink = BusSink(endpoint, "cnty1a", tmp_path / "spool", backoff=FAST, timeout_s=3.0)
        sink.submit(batch(1))
        wait_until(lambda: sink.delivered_total == 2, what="the first batch published")
        serving = next(s for s in servers if client_connections(s) == 1)
        other = next(s for s in servers if s is not serving)
        with frozen(serving):
            started = time.monotonic()
            sink.submit(batch(2))
            wait_until(lambda: sink.delivered_total == 4, timeout=120, what="the next batch on the next server")
            took_s = time.monotonic() - started
        sink.close()
        assert windows_in_stream((pki, other)) == [("core", 2), ("cnty2b", 2)]
    pings_s = PING_INTERVAL_S * (MAX_OUTSTANDING_PINGS + 1)
    bound_s = pings_s + TLS_SHUTDOWN_TIMEOUT_S + endpoint.connect_timeout_s + sink.timeout_s + 8.0  # load
    assert bound_s < 2 * PING_INTERVAL_S + 30.0  # asyncio's own TLS close would not fit
    assert took_s < bound_s, f"delivered after {took_s:.1f} s"
