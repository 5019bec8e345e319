"""Connection options: plain without a CA, TLS with the client's certificate with one; a frozen
server (a real listener that accepts and stays silent, a real nats-server stopped) costs seconds."""

from __future__ import annotations

import asyncio
import gc
import ssl
import time
from asyncio import sslproto
from dataclasses import replace

import nats
import pytest

from collector.bus.connection import (
    MAX_OUTSTANDING_PINGS,
    PING_INTERVAL_S,
    TLS_SHUTDOWN_TIMEOUT_S,
    BusEndpoint,
    BusEventLoop,
    bus_event_loop,
    inbox_prefix,
    run_on_bus_loop,
)
from tests.bus_support import frozen, frozen_listener, running_bus, running_servers
from xnetmon import bus_setup


def test_without_a_ca_the_connection_is_plain_and_reconnects_for_ever():
    options = BusEndpoint(("nats://127.0.0.1:4222",), "site-cnty1a").connect_options()
    assert "tls" not in options
    assert options["servers"] == ["nats://127.0.0.1:4222"]
    assert options["inbox_prefix"] == inbox_prefix("site-cnty1a") == "_XNET_INBOX.site-cnty1a"
    assert options["allow_reconnect"] and options["max_reconnect_attempts"] == -1


def test_a_server_that_stops_answering_is_left_within_seconds_not_minutes():
    """nats-py's default pings (every 2 min, 2 outstanding) notice a frozen server after
    minutes; agents and analyzers take their options from here (analyzer/test_bus_intake.py
    freezes a real server)."""
    options = BusEndpoint(("nats://127.0.0.1:4222",), "analyzer").connect_options()
    assert options["ping_interval"] == PING_INTERVAL_S and options["max_outstanding_pings"] == MAX_OUTSTANDING_PINGS
    assert PING_INTERVAL_S * (MAX_OUTSTANDING_PINGS + 1) <= 10


def test_with_a_ca_the_client_presents_its_certificate(tmp_path):
    pki = bus_setup.init(tmp_path)
    bus_setup.add_site(pki, "cnty1a")
    context = bus_setup.site_endpoint(pki, "cnty1a", ("tls://127.0.0.1:4222",)).tls_context()
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert len(context.get_ca_certs()) == 1


FROZEN_INFO = b'INFO {"server_id":"frozen","version":"2.9.10","tls_required":true,"max_payload":1048576}\r\n'


async def connect_past(endpoint: BusEndpoint, errors: list[str]) -> tuple[float, str]:
    """Connect with the servers tried in their order: (seconds until connected, the server's URL)."""

    async def record(exc: Exception) -> None:
        errors.append(type(exc).__name__)

    started = time.monotonic()
    client = await nats.connect(**endpoint.connect_options() | {"dont_randomize": True, "error_cb": record})
    try:
        return time.monotonic() - started, str(client.connected_url.geturl() if client.connected_url else "")
    finally:
        await client.close()


@pytest.mark.tool("nats-server")
@pytest.mark.parametrize("greeting", [b"", FROZEN_INFO], ids=["silent", "frozen-in-tls-handshake"])
def test_a_listener_that_accepts_and_stays_silent_costs_one_connect_timeout(tmp_path, greeting):
    """A frozen server's kernel still accepts: the client waits for its INFO, or after an INFO
    asking for TLS for its handshake, no longer than `connect_timeout_s`, then takes the next
    (in asyncio's own loop a handshake given up left nats-py waiting for ever on the close)."""
    with running_bus(tmp_path) as (pki, server), frozen_listener(greeting) as silent:
        endpoint = replace(bus_setup.analyzer_endpoint(pki, (silent, server.url)), connect_timeout_s=1.0)
        errors: list[str] = []
        with asyncio.Runner(loop_factory=bus_event_loop) as runner:
            took_s, url = runner.run(connect_past(endpoint, errors))
    assert url == server.url and errors == ["TimeoutError"]
    assert took_s < 1.0 + 5.0, f"connected after {took_s:.1f} s"  # the timeout, and a loaded machine


@pytest.mark.tool("nats-server")
def test_a_frozen_server_is_left_for_the_next_within_seconds_over_tls(tmp_path):
    """A connection up over TLS when its server freezes: the pings leave it after 6-9 s, and
    the close waits TLS_SHUTDOWN_TIMEOUT_S for the server's close_notify, not asyncio's 30 s,
    before the client takes the next server (39 s in all with asyncio's default)."""
    with running_servers(tmp_path, 2) as (pki, (first, second)):
        endpoint = bus_setup.analyzer_endpoint(pki, (first.url, second.url))
        moved = asyncio.Event()

        async def watch() -> tuple[str, float, str]:
            async def reconnected() -> None:
                moved.set()

            client = await nats.connect(
                **endpoint.connect_options() | {"dont_randomize": True, "reconnected_cb": reconnected}
            )
            try:
                before = str(client.connected_url.geturl() if client.connected_url else "")
                with frozen(first):
                    started = time.monotonic()
                    await asyncio.wait_for(moved.wait(), 120)
                    took_s = time.monotonic() - started
                return before, took_s, str(client.connected_url.geturl() if client.connected_url else "")
            finally:
                await client.close()

        with asyncio.Runner(loop_factory=bus_event_loop) as runner:
            before, took_s, after = runner.run(watch())
    assert (before, after) == (first.url, second.url)
    pings_s = PING_INTERVAL_S * (MAX_OUTSTANDING_PINGS + 1)
    bound_s = pings_s + TLS_SHUTDOWN_TIMEOUT_S + endpoint.connect_timeout_s + 8.0  # a loaded machine's delays
    assert bound_s < pings_s + 30.0  # asyncio's own TLS close alone would not fit
    assert took_s < bound_s, f"on the next server after {took_s:.1f} s"


@pytest.mark.tool("nats-server")
def test_a_server_closing_a_tls_connection_logs_no_asyncio_warning(tmp_path, caplog):
    """nats-py upgrades its stream to TLS with `loop.start_tls`, which leaves the stream
    believing it is plain: each server close logged "returning true from eof_received() has no
    effect when using ssl" on every agent and analyzer, noise for the operator reading them."""
    with running_bus(tmp_path) as (pki, server):
        endpoint = bus_setup.analyzer_endpoint(pki, (server.url,))

        async def connect_then_lose_the_server() -> None:
            lost = asyncio.Event()

            async def disconnected() -> None:
                lost.set()

            client = await nats.connect(
                **endpoint.connect_options() | {"disconnected_cb": disconnected, "allow_reconnect": False}
            )
            try:
                server.stop()
                await asyncio.wait_for(lost.wait(), 60)
            finally:
                await client.close()

        with caplog.at_level("WARNING", logger="asyncio"), asyncio.Runner(loop_factory=bus_event_loop) as runner:
            runner.run(connect_then_lose_the_server())
    assert not [r.getMessage() for r in caplog.records if r.name == "asyncio"]


def test_bus_clients_run_in_a_loop_that_bounds_the_tls_close():
    loop = bus_event_loop()
    try:
        assert isinstance(loop, BusEventLoop)
    finally:
        loop.close()


def test_a_script_runs_its_bus_coroutine_in_a_bus_loop():
    async def which_loop() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    loop = run_on_bus_loop(which_loop())
    assert isinstance(loop, BusEventLoop) and loop.is_closed()


def tls_read_buffers_held() -> int:
    """Octets of read buffers held by this process's TLS protocols, live or not yet collected."""
    return sum(len(obj._ssl_buffer) for obj in gc.get_objects() if isinstance(obj, sslproto.SSLProtocol))


@pytest.mark.tool("nats-server")
def test_a_tls_handshake_given_up_lets_its_read_buffer_go_at_once(tmp_path):
    """A given-up handshake's protocol stays in reference cycles until a full collection, and
    held its 256 KiB read buffer there: four tries at a frozen server held 1 MiB."""
    with running_bus(tmp_path) as (pki, _server), frozen_listener(FROZEN_INFO) as frozen_url:
        endpoint = replace(bus_setup.analyzer_endpoint(pki, (frozen_url,)), connect_timeout_s=0.5)

        async def try_once() -> None:
            with pytest.raises(Exception):  # noqa: B017 - nats-py raises its own "no servers" error
                await nats.connect(**endpoint.connect_options() | {"allow_reconnect": False})

        gc.collect()
        gc.disable()
        try:
            before = tls_read_buffers_held()  # live connections of other tests in this process
            with asyncio.Runner(loop_factory=bus_event_loop) as runner:
                for _ in range(4):
                    runner.run(try_once())
            held = tls_read_buffers_held() - before
        finally:
            gc.enable()
    assert held == 0, f"{held} octets of read buffers kept by given-up handshakes"
