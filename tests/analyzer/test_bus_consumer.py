"""BusConsumer, the thread and event loop both bus intakes run on, with a consumer of its own
against a real nats-server: every message reaches its hook, the last checkpoint is saved as
it stops and restored by the next one, which resumes after it; a set-up JetStream refuses is
tried again and counted, and a consumer that never got going stops at once."""

from __future__ import annotations

import asyncio
import threading

import nats
import pytest

from analyzer import bus_consumer
from analyzer.bus_checkpoint import checkpoint_store
from analyzer.bus_consumer import BusConsumer, durable_consumer, ensure_stream
from analyzer.sla.verdicts import default_policies
from analyzer.store.memory import WindowStore
from collector.bus.stream import STREAM_NAME, StreamLimits, stream_config
from collector.bus.subjects import subject
from tests.bus_support import connect_options, running_bus
from tests.support import wait_until
from xnetmon import bus_setup

pytestmark = pytest.mark.tool("nats-server")


class Recorder(BusConsumer):
    """Takes every message of the stream as it is, acked."""

    role = "recorder"
    stream = STREAM_NAME

    def __init__(self, endpoint, durable: str = "recorder", set_up_fails: bool = False) -> None:
        self.bodies: list[bytes] = []
        self.set_up_fails = set_up_fails
        super().__init__(
            WindowStore(default_policies()), endpoint, durable, clock=lambda: 0, in_thread=None, checkpoint_every_s=3600
        )

    async def _set_up(self, js):
        if self.set_up_fails:
            raise TimeoutError("no answer from JetStream")
        await ensure_stream(js, stream_config(StreamLimits()))
        return await checkpoint_store(js)

    async def _subscribe(self, js, start_seq: int):
        return await durable_consumer(js, STREAM_NAME, "xnet.>", self.durable, start_seq)

    async def _take(self, message) -> None:
        self.messages_total += 1
        self.bodies.append(message.data)
        self.through_seq = message.metadata.sequence.stream
        await message.ack()

    def _covered_seq(self) -> int:
        return self.through_seq


@pytest.fixture
def bus(tmp_path):
    with running_bus(tmp_path) as (pki, server):
        yield pki, server, bus_setup.analyzer_endpoint(pki, (server.url,))


def publish(pki, server, *bodies: bytes) -> None:
    async def send() -> None:
        client = await nats.connect(**connect_options(bus_setup.site_endpoint(pki, "cnty1a", (server.url,))))
        try:
            for body in bodies:
                await client.jetstream().publish(subject("windows", "cnty1a"), body)
        finally:
            await client.close()

    asyncio.run(send())


def test_every_message_reaches_its_hook_and_the_next_consumer_resumes_after_the_last_checkpoint(bus):
    pki, server, endpoint = bus
    first = Recorder(endpoint)
    wait_until(first.connected.is_set, what="the consumer made")
    publish(pki, server, b"one", b"two")
    wait_until(lambda: first.bodies == [b"one", b"two"], what="both messages taken")
    first.stop()
    assert not first._thread.is_alive() and first.checkpoints_total == 1 and first.errors_total == 0
    publish(pki, server, b"three")
    second = Recorder(endpoint)
    wait_until(lambda: second.bodies == [b"three"], what="the message published meanwhile, and only it")
    second.stop()
    assert second.restored_seq == 2 and second.checkpoint_failures == 0


def test_a_set_up_jetstream_refuses_is_tried_again_and_counted_and_stop_gives_it_up(bus, monkeypatch):
    monkeypatch.setattr(bus_consumer, "SET_UP_RETRY_S", 0.05)
    _pki, _server, endpoint = bus
    stuck = Recorder(endpoint, set_up_fails=True)
    wait_until(lambda: stuck.errors_total >= 3, what="the set-up tried again")
    stuck.stop()
    assert not stuck._thread.is_alive() and not stuck.connected.is_set() and stuck._loop.is_closed()


def test_a_set_up_step_jetstream_does_not_answer_yet_is_tried_again_and_counted(monkeypatch):
    """A cluster still electing its leaders times out the stream's creation: the intake tried
    once, ended, and never consumed (found by a three-server test)."""
    monkeypatch.setattr(bus_consumer, "SET_UP_RETRY_S", 0.0)
    stopping, errors, tries = threading.Event(), [], []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    async def step():
        tries.append(1)
        if len(tries) < 3:
            raise TimeoutError("no answer from JetStream")
        return "made"

    assert asyncio.run(bus_consumer.until_done(step, on_error, stopping)) == "made"
    assert len(tries) == 3 and len(errors) == 2
    stopping.set()  # stopping: the failure ends the set-up
    tries.clear()
    with pytest.raises(TimeoutError):
        asyncio.run(bus_consumer.until_done(step, on_error, stopping))
