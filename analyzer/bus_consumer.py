"""A JetStream consumer on a thread of its own: what the analyzer's bus intake
(analyzer/bus_intake.py) and the combiner's (analyzer/combiner_intake.py) share.

`BusConsumer` runs nats-py's asyncio on an event loop of its own, on a daemon thread started
at construction: it connects, makes what it consumes from (tried again until JetStream
answers: `until_done`), restores the store's checkpoint from the bus (analyzer.bus_checkpoint,
the object named after its durable consumer) into its (empty) store, makes its durable pull
consumer anew to deliver from the sequence after it, and then pulls, one message at a time
while idle and many while a backlog lasts, until `stop()`. Every `checkpoint_every_s` (and
once more as it stops) it saves the store with the stream sequence it covers. A failure of
the loop is counted (`errors_total`), the first MAX_ERRORS_LOGGED logged, and the loop goes
on. What a message means, which stream and which sequence a checkpoint covers are the
subclass's (the hooks below).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

import nats
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import BadRequestError, NotFoundError

from analyzer.bus_checkpoint import CHECKPOINT_BUCKET, Checkpoint, load_checkpoint, save_checkpoint
from analyzer.store.memory import WindowStore
from analyzer.store.snapshot import restore_into, snapshot_text
from collector.bus.connection import BusEndpoint, bus_event_loop

log = logging.getLogger(__name__)

FETCH_BATCH = 256  # messages per pull while a backlog lasts: each is up to one spooled body
IDLE_WAIT_S = 0.5  # a pull for one message: returns as soon as it arrives
BACKLOG_WAIT_S = 0.02  # a pull for many: how long it may hold what arrives after the backlog
LOST_WAIT_S = 0.5  # after a pull the connection failed: the client reconnects meanwhile
ACK_WAIT_S = 60.0  # a message not acked within this is delivered again
MAX_ERRORS_LOGGED = 20
CHECKPOINT_EVERY_S = 10.0  # what a restarted replica replays at most, beyond its catch-up
SET_UP_RETRY_S = 1.0  # between tries to make the stream, the object store or the consumer


class BusConsumer:
    """Consumes as `durable` until `stop()`, checkpointing `store`. A subclass sets what its
    hooks use before it calls `BusConsumer.__init__`, which starts the thread."""

    role: ClassVar[str]  # in log lines and the thread's name: "bus intake", "combiner"
    stream: ClassVar[str]  # the stream consumed, in log lines

    def __init__(
        self,
        store: WindowStore,
        endpoint: BusEndpoint,
        durable: str,
        *,
        clock: Callable[[], int],
        in_thread: Callable[[], None] | None,
        checkpoint_every_s: float,
    ) -> None:
        """`in_thread` runs first in the thread, before any socket is opened (the all-in-one
        moves the thread into the lab's namespace, where the bus is). `store` must be empty:
        it gets the checkpoint once connected."""
        self.bus = endpoint
        self.durable = durable
        self.checkpoint_every_s = checkpoint_every_s
        self.messages_total = 0  # messages taken from the stream, refused ones included
        self.errors_total = 0  # failures of the loop itself (lost connection, a store bug)
        self.restored_seq: int | None = None  # the sequence of the checkpoint restored at start
        self.through_seq = 0  # the newest stream sequence taken (ingested or refused)
        self.checkpoints_total = 0
        self.checkpoint_failures = 0  # saves or a restore that failed (logged); the next save is another try
        self.connected = threading.Event()  # the consumer was made
        self._checkpointed = store
        self._clock = clock
        self._in_thread = in_thread
        self._stop = threading.Event()
        self._final_checkpoint = True
        self._loop = bus_event_loop()  # a frozen server's TLS close bounded (collector.bus.connection)
        self._task = self._loop.create_task(self._run())
        name = f"xnetmon-{self.role.replace(' ', '-')}-{durable}"
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        if self._in_thread is not None:
            self._in_thread()
        with contextlib.suppress(asyncio.CancelledError):
            self._loop.run_until_complete(self._task)
        self._loop.close()

    def stop(self, timeout: float = 10.0, final_checkpoint: bool = True) -> None:
        """Finish the messages fetched, save a last checkpoint (unless not `final_checkpoint`:
        a crash, which leaves the last periodic one), then close; a connection still being
        tried is given up."""
        self._final_checkpoint = final_checkpoint
        self._stop.set()
        if not self.connected.is_set():
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(timeout)

    # -- the hooks -------------------------------------------------------------------------

    def _connect_options(self) -> dict[str, Any]:
        """Callbacks to nats.connect beyond `error_cb`."""
        return {}

    async def _set_up(self, js) -> Any:
        """Make what is consumed (the stream, ...); the checkpoints' object store."""
        raise NotImplementedError

    async def _subscribe(self, js, start_seq: int):
        """The durable pull consumer, delivering from `start_seq`."""
        raise NotImplementedError

    async def _take(self, message) -> None:
        """One message: taken (and acked) or refused (and terminated)."""
        raise NotImplementedError

    def _covered_seq(self) -> int:
        """The stream sequence the store covers now, for its checkpoint."""
        raise NotImplementedError

    def _checkpoint_due(self, saved_seq: int) -> bool:
        """Whether a save is worth it, `saved_seq` being the sequence last saved."""
        return True

    def _next_pull_size(self, messages: list) -> int:
        """How many messages the pull after `messages` (a backlog's batch) asks for."""
        return FETCH_BATCH

    async def _see_link(self, up: bool) -> None:
        """The connection found up or down by the loop."""

    async def _when_idle(self) -> None:
        """Nothing came within a pull's wait."""

    async def _after_taking(self) -> None:
        """A batch was taken; also once more as the consumer stops."""

    # -- the loop --------------------------------------------------------------------------

    async def _run(self) -> None:
        client = await nats.connect(**self.bus.connect_options(), error_cb=self._on_error, **self._connect_options())
        try:
            self._js = client.jetstream()
            objects = await until_done(lambda: self._set_up(self._js), self._on_error, self._stop)
            start_seq = await self._restore(objects)
            subscription = await until_done(
                lambda: self._subscribe(self._js, start_seq + 1), self._on_error, self._stop
            )
            self.connected.set()
            size = 1
            saved_seq, next_save = start_seq, time.monotonic() + self.checkpoint_every_s
            while not self._stop.is_set():
                if time.monotonic() >= next_save:
                    if self._checkpoint_due(saved_seq):
                        saved_seq = await self._checkpoint(objects, saved_seq)
                    next_save = time.monotonic() + self.checkpoint_every_s
                # A pull for many waits out its whole timeout once the backlog is taken, holding
                # the messages that arrive meanwhile; so idle waits pull one (back at once), and
                # pulls for many follow while a backlog lasts, with a short wait.
                try:
                    messages = await subscription.fetch(size, timeout=IDLE_WAIT_S if size == 1 else BACKLOG_WAIT_S)
                except (TimeoutError, NatsTimeout):  # nothing new within the wait, or the server away
                    await self._see_link(client.is_connected)
                    size = 1
                    await self._when_idle()
                    continue
                except Exception as exc:  # the connection is away: the client reconnects
                    await self._see_link(client.is_connected)
                    await self._on_error(exc)
                    await asyncio.sleep(LOST_WAIT_S)
                    continue
                size = self._next_pull_size(messages)
                for message in messages:
                    await self._take(message)
                await self._after_taking()
            await self._after_taking()
            if self._final_checkpoint and self._checkpoint_due(saved_seq):
                await self._checkpoint(objects, saved_seq)  # the last one, so a restart replays little
        finally:
            await close_quietly(client)

    async def _restore(self, objects) -> int:
        """Load this consumer's checkpoint into the store; the sequence it covers (0: none)."""
        name = f"checkpoint {CHECKPOINT_BUCKET}/{self.durable}"
        try:
            checkpoint = await load_checkpoint(objects, self.durable)
            if checkpoint is None:
                return 0
            restore_into(self._checkpointed, checkpoint.snapshot, name)
        except ValueError as exc:  # replaying the whole stream rebuilds what the stream still holds
            self.checkpoint_failures += 1
            log.error("%s cannot be used (%s); %s is taken from its start", name, exc, self.stream)
            return 0
        self.restored_seq = self.through_seq = checkpoint.seq
        log.info("state restored from %s, stream %s sequence %d", name, self.stream, checkpoint.seq)
        return checkpoint.seq

    async def _checkpoint(self, objects, saved_seq: int) -> int:
        """Save the store with the sequence it covers; the sequence now saved."""
        seq = self._covered_seq()  # read before the state, so the state covers at least this much
        try:
            text = await asyncio.get_running_loop().run_in_executor(None, snapshot_text, self._checkpointed)
            await save_checkpoint(objects, self.durable, Checkpoint(seq, text))
        except Exception as exc:  # the bus or the store away: the next save is another try
            self.checkpoint_failures += 1
            if self.checkpoint_failures <= MAX_ERRORS_LOGGED:
                log.warning("checkpoint of %s not saved: %s: %s", self.durable, type(exc).__name__, exc)
            return saved_seq
        self.checkpoints_total += 1
        return seq

    def _count_error(self, exc: Exception) -> None:
        self.errors_total += 1
        if self.errors_total <= MAX_ERRORS_LOGGED:
            log.warning("%s %s: %s: %s", self.role, self.durable, type(exc).__name__, exc)

    async def _on_error(self, exc: Exception) -> None:
        if not self._stop.is_set():  # else TLS teardown noise while closing
            self._count_error(exc)


async def close_quietly(client) -> None:
    """Close the connection; a TLS transport the server already tore down (nats-py then
    fails inside close) leaves nothing to close."""
    try:
        await client.close()
    except (AttributeError, OSError) as exc:
        log.debug("closing the bus connection: %s: %s", type(exc).__name__, exc)


async def until_done(step, on_error, stopping: threading.Event):
    """`step()`'s result, tried again until it comes: JetStream may not answer yet (a cluster
    still electing its leaders, a server starting), and a consumer that gave up then would never
    consume. Each failure goes to `on_error` (counted); once `stopping`, a failure ends it."""
    while True:
        try:
            return await step()
        except Exception as exc:
            if stopping.is_set():
                raise
            await on_error(exc)
            await asyncio.sleep(SET_UP_RETRY_S)


async def durable_consumer(js, stream: str, subject: str, durable: str, start_seq: int, **config):
    """The durable pull consumer of `stream`, made anew to deliver from `start_seq`: the
    position a restored checkpoint needs, whatever was acked after it."""
    with contextlib.suppress(NotFoundError):
        await js.delete_consumer(stream, durable)
    return await js.pull_subscribe(
        subject,
        durable=durable,
        stream=stream,
        config=ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE if start_seq > 1 else DeliverPolicy.ALL,
            opt_start_seq=start_seq if start_seq > 1 else None,
            ack_wait=ACK_WAIT_S,
            **config,
        ),
    )


async def ensure_stream(js, config) -> None:
    """The stream, created unless it exists (then the operator's limits are kept)."""
    try:
        await js.add_stream(config)
    except BadRequestError as exc:  # it exists with other limits (the operator's are kept), or no room
        log.warning("stream %s not created with these limits (%s); an existing one is kept", config.name, exc)
