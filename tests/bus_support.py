"""A real nats-server for bus tests: a throwaway PKI with sites in a temporary directory and
the server on free loopback ports, stopped after the test."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import nats

from collector.bus.connection import BusEndpoint, run_on_bus_loop
from collector.bus.stream import STREAM_NAME, StreamLimits, stream_config
from xnetmon import bus_setup
from xnetmon.nats_server import NatsCluster, NatsServer

SITES = ("cnty1a", "cnty2b")


@contextlib.contextmanager
def running_bus(
    directory: Path, sites: tuple[str, ...] = SITES, partitions: int | None = None, operators: tuple[str, ...] = ()
) -> Iterator[tuple[Path, NatsServer]]:
    """(the PKI directory, the running server)."""
    pki = bus_setup.init(directory / "pki")
    for site in sites:
        bus_setup.add_site(pki, site)
    for operator in operators:
        bus_setup.add_operator(pki, operator)
    server = NatsServer(pki, directory / "server", partitions=partitions)
    try:
        yield pki, server
    finally:
        server.stop()


@contextlib.contextmanager
def running_servers(
    directory: Path, count: int, sites: tuple[str, ...] = SITES
) -> Iterator[tuple[Path, list[NatsServer]]]:
    """(the PKI directory, `count` servers apart, not a cluster, that know the same sites): a
    client's list of servers to move between."""
    pki = bus_setup.init(directory / "pki")
    for site in sites:
        bus_setup.add_site(pki, site)
    with contextlib.ExitStack() as stack:
        yield pki, [stack.enter_context(NatsServer(pki, directory / f"server{i}")) for i in range(count)]


def client_connections(server: NatsServer) -> int:
    """Clients connected to `server` now, from its monitoring endpoint."""
    with urllib.request.urlopen(f"{server.monitor_url}/varz", timeout=10) as answer:
        return int(json.load(answer)["connections"])


@contextlib.contextmanager
def frozen(server: NatsServer) -> Iterator[None]:
    """`server` stopped by SIGSTOP: its kernel keeps the sockets open and takes new connections,
    the server answers nothing. Thawed on leaving."""
    assert server.pid is not None
    os.kill(server.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.pid, signal.SIGCONT)


@contextlib.contextmanager
def frozen_listener(greeting: bytes = b"") -> Iterator[str]:
    """A loopback listener that accepts every connection, sends `greeting` and then nothing,
    as a frozen server does; yields its tls:// URL. Its connections close on leaving."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)  # the accepting thread looks for `closing` this often
    held: list[socket.socket] = []
    closing = threading.Event()

    def accept() -> None:
        while not closing.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            held.append(connection)
            connection.sendall(greeting)

    thread = threading.Thread(target=accept, name="frozen-listener", daemon=True)
    thread.start()
    try:
        yield f"tls://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        closing.set()
        thread.join(5)
        listener.close()
        for connection in held:
            connection.close()


@contextlib.contextmanager
def running_cluster(
    directory: Path, sites: tuple[str, ...] = SITES, size: int = 3
) -> Iterator[tuple[Path, NatsCluster]]:
    """(the PKI directory, the running cluster with a meta leader)."""
    pki = bus_setup.init(directory / "pki")
    for site in sites:
        bus_setup.add_site(pki, site)
    with NatsCluster(pki, directory / "cluster", size) as cluster:
        yield pki, cluster


def stream_info(endpoint: BusEndpoint, name: str = STREAM_NAME):
    """nats-py's StreamInfo of the stream: its state, and on a cluster its leader and replicas."""

    async def read():
        client = await nats.connect(**connect_options(endpoint))
        try:
            return await client.jetstream().stream_info(name)
        finally:
            await client.close()

    return run_on_bus_loop(read())


def connect_options(endpoint: BusEndpoint, errors: list[str] | None = None) -> dict:
    """`nats.connect` options of `endpoint` that give up at once, recording server errors."""

    async def record(exc: Exception) -> None:
        if errors is not None:
            errors.append(f"{type(exc).__name__}: {exc}")

    return endpoint.connect_options() | {"allow_reconnect": False, "max_reconnect_attempts": 0, "error_cb": record}


def stream_messages(endpoint: BusEndpoint) -> list[tuple[str, bytes, str]]:
    """(subject, body, message id) of every message in the stream, in stream order: read by a
    consumer of its own (what an analyzer may do; it may not get messages by sequence)."""

    async def read() -> list[tuple[str, bytes, str]]:
        client = await nats.connect(**connect_options(endpoint))
        durable = f"inspect-{uuid.uuid4().hex[:12]}"
        try:
            js = client.jetstream()
            last = (await js.stream_info(STREAM_NAME)).state.last_seq
            subscription = await js.pull_subscribe("xnet.>", durable=durable, stream=STREAM_NAME)
            found: list[tuple[str, bytes, str]] = []
            seq = 0
            while seq < last:
                for message in await subscription.fetch(256, timeout=5):
                    seq = message.metadata.sequence.stream
                    found.append((message.subject, message.data or b"", (message.headers or {}).get("Nats-Msg-Id", "")))
                    await message.ack()
            await js.delete_consumer(STREAM_NAME, durable)
            return found
        finally:
            await client.close()

    return run_on_bus_loop(read())


def create_stream(endpoint: BusEndpoint, limits: StreamLimits = StreamLimits()) -> None:
    """The stream, as an analyzer creates it at start (sinks' tests run without one)."""

    async def create() -> None:
        client = await nats.connect(**connect_options(endpoint))
        try:
            await client.jetstream().add_stream(stream_config(limits))
        finally:
            await client.close()

    run_on_bus_loop(create())
