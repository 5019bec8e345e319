"""Checkpoints on a real nats-server, with the analyzer's certificate and permissions: a
snapshot larger than one message (1 MiB) round-trips with its stream sequence, a replica
without one has none, and each replica has its own."""

from __future__ import annotations

import asyncio

import nats
import pytest

from analyzer.bus_checkpoint import Checkpoint, checkpoint_store, load_checkpoint, save_checkpoint
from tests.bus_support import connect_options, running_bus
from xnetmon import bus_setup

pytestmark = pytest.mark.tool("nats-server")


def test_a_checkpoint_beyond_one_message_round_trips_per_replica(tmp_path):
    big = Checkpoint(1234, '{"paths": "' + "x" * 3_000_000 + '"}')
    errors: list[str] = []

    async def exercise(url: str):
        client = await nats.connect(**connect_options(bus_setup.analyzer_endpoint(pki, (url,)), errors))
        try:
            objects = await checkpoint_store(client.jetstream())
            none_yet = await load_checkpoint(objects, "analyzer-a")
            await save_checkpoint(objects, "analyzer-a", Checkpoint(1, "old"))
            await save_checkpoint(objects, "analyzer-a", big)
            await save_checkpoint(objects, "analyzer-b", Checkpoint(7, "{}"))
            again = await checkpoint_store(client.jetstream())  # the bucket is found, not made twice
            return none_yet, await load_checkpoint(again, "analyzer-a"), await load_checkpoint(again, "analyzer-b")
        finally:
            await client.close()

    with running_bus(tmp_path) as (pki, server):
        none_yet, first, second = asyncio.run(exercise(server.url))
    assert none_yet is None
    assert first == big
    assert second == Checkpoint(7, "{}")
    assert not [e for e in errors if "Permissions Violation" in e]


def test_analyzers_that_start_together_share_one_bucket(tmp_path):
    """Replicas and partitions start at once: each may find no bucket and make it, and the
    one that comes second takes the first one's instead of failing."""
    errors: list[str] = []

    async def exercise(url: str):
        clients = [
            await nats.connect(**connect_options(bus_setup.analyzer_endpoint(pki, (url,)), errors)) for _ in range(6)
        ]
        try:
            stores = await asyncio.gather(*(checkpoint_store(client.jetstream()) for client in clients))
            await save_checkpoint(stores[0], "analyzer-a", Checkpoint(3, "{}"))
            return [await load_checkpoint(objects, "analyzer-a") for objects in stores]
        finally:
            for client in clients:
                await client.close()

    with running_bus(tmp_path) as (pki, server):
        seen = asyncio.run(exercise(server.url))
    assert seen == [Checkpoint(3, "{}")] * 6
