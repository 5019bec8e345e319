"""A real nats-server for bus tests: a throwaway PKI with sites in a temporary directory and
the server on free loopback ports, stopped after the test."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import nats

from collector.bus.connection import BusEndpoint
from collector.bus.stream import STREAM_NAME, StreamLimits, stream_config
from xnetmon import bus_setup
from xnetmon.nats_server import NatsCluster, NatsServer

SITES = ("cnty1a", "cnty2b")


@contextlib.contextmanager
def running_bus(
    directory: Path, sites: tuple[str, ...] = SITES, partitions: int | None = None
) -> Iterator[tuple[Path, NatsServer]]:
    """(the PKI directory, the running server)."""
    pki = bus_setup.init(directory / "pki")
    for site in sites:
        bus_setup.add_site(pki, site)
    server = NatsServer(pki, directory / "server", partitions=partitions)
    try:
        yield pki, server
    finally:
        server.stop()


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

    return asyncio.run(read())


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

    return asyncio.run(read())


def create_stream(endpoint: BusEndpoint, limits: StreamLimits = StreamLimits()) -> None:
    """The stream, as an analyzer creates it at start (sinks' tests run without one)."""

    async def create() -> None:
        client = await nats.connect(**connect_options(endpoint))
        try:
            await client.jetstream().add_stream(stream_config(limits))
        finally:
            await client.close()

    asyncio.run(create())
