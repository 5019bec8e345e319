"""A real nats-server for bus tests: a throwaway PKI with sites in a temporary directory and
the server on free loopback ports, stopped after the test."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import nats
import nats.js.errors

from collector.bus.connection import BusEndpoint
from collector.bus.stream import STREAM_NAME, StreamLimits, stream_config
from xnetmon import bus_setup
from xnetmon.nats_server import NatsServer

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


def connect_options(endpoint: BusEndpoint, errors: list[str] | None = None) -> dict:
    """`nats.connect` options of `endpoint` that give up at once, recording server errors."""

    async def record(exc: Exception) -> None:
        if errors is not None:
            errors.append(f"{type(exc).__name__}: {exc}")

    return endpoint.connect_options() | {"allow_reconnect": False, "max_reconnect_attempts": 0, "error_cb": record}


def stream_messages(endpoint: BusEndpoint) -> list[tuple[str, bytes, str]]:
    """(subject, body, message id) of every message in the stream, in stream order."""

    async def read() -> list[tuple[str, bytes, str]]:
        client = await nats.connect(**connect_options(endpoint))
        try:
            js = client.jetstream()
            last = (await js.stream_info(STREAM_NAME)).state.last_seq
            found = []
            for seq in range(1, last + 1):
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    message = await js.get_msg(STREAM_NAME, seq)
                    found.append((message.subject, message.data or b"", (message.headers or {}).get("Nats-Msg-Id", "")))
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
