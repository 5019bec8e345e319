"""The analyzer's side of the bus: a durable pull consumer on the stream that feeds the same
store ingest as `POST /v1/windows`, through the same codec.

Each message is decoded (`collector.contract.codec.ShipmentParser`), checked against the
site its subject names (the server lets a site publish only on its own subjects, so the
subject is the site's identity; a body naming another source is a forgery or a bug), put
into the store and only then acknowledged: an analyzer that dies before the ack gets the
message again, and the store drops windows it already holds by (path key, seq). Refused
messages are terminated (never redelivered) and their windows counted by reason
(`xnet_analyzer_windows_refused_total`).

State and position agree through a checkpoint on the bus (`analyzer.bus_checkpoint`): every
`checkpoint_every_s` the store's snapshot is saved with the stream sequence it covers, and
at each start the intake restores the replica's checkpoint into its (empty) store and
re-creates its durable consumer to deliver from that sequence + 1 (from the stream's start
without a checkpoint). Acks only pace delivery within a run (ack wait, max pending); the
position a restarted replica resumes from is its checkpoint's, so windows taken after the
last checkpoint are taken again rather than missing from the restored state, and the
store's (path key, seq) dedup drops what the checkpoint held already.

While the intake has lost its server, the agents keep their windows in their spools (or
the stream holds them): the store stops closing intervals by time (they are not empty,
only late) and, once the intake is connected again, waits `reconnect_catch_up_s` for them
before it closes by time again (`WindowStore.suspend_time_closing`). The loss is seen in the
client's state after each pull, not only in nats-py's `disconnected_cb`: a server that stops
answering is left after its pings go unanswered (collector.bus.connection), but over TLS the
callback comes only once the close of the connection has waited for the server's close_notify
(`TLS_SHUTDOWN_TIMEOUT_S` in the intake's `bus_event_loop`; asyncio's own 30 s elsewhere).
`link()` is what /metrics shows of it (xnet_analyzer_bus_connected).

nats-py is asyncio: the intake runs its own event loop on a thread of its own; ingest
happens on that thread, under the store's lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable

import nats
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import BadRequestError, NotFoundError

from analyzer.bus_checkpoint import CHECKPOINT_BUCKET, Checkpoint, checkpoint_store, load_checkpoint, save_checkpoint
from analyzer.exporter import BusLink
from analyzer.partials import PartialsOutbox, partials_stream_config, partials_subject
from analyzer.store.memory import WindowStore
from analyzer.store.snapshot import restore_into, snapshot_text
from collector.bus.connection import BusEndpoint, bus_event_loop
from collector.bus.stream import STREAM_NAME, StreamLimits, stream_config
from collector.bus.subjects import PREFIX, BadSubject, parse_subject, partition_filter
from collector.contract.codec import MalformedShipment, ShipmentParser
from collector.contract.shipment import ShipmentBatch

log = logging.getLogger(__name__)

FETCH_BATCH = 256  # messages per pull while a backlog lasts: each is up to one spooled body
# Bytes one pull may ask for (judged by the largest message of the last one): what the server
# writes to an analyzer that its CPU is starved of must drain within nats-server's write
# deadline (10 s), or the server drops it as a slow consumer and every message comes again
# after the ack wait. 256 bodies of 500 windows are ~90 MB; this keeps a pull to a few MB.
PULL_BYTES = 4 << 20
IDLE_WAIT_S = 0.5  # a pull for one message: returns as soon as it arrives
BACKLOG_WAIT_S = 0.02  # a pull for many: how long it may hold what arrives after the backlog
ACK_WAIT_S = 60.0  # a message not acked within this is delivered again
MAX_ACK_PENDING = 4096
MAX_ERRORS_LOGGED = 20
CHECKPOINT_EVERY_S = 10.0  # what a restarted replica replays at most, beyond its catch-up
SET_UP_RETRY_S = 1.0  # between tries to make the stream, the object store or the consumer
# After the bus returns, agents retry within their backoff's cap (30 s) and a send's
# timeout (10 s): their spooled windows are in by then.
RECONNECT_CATCH_UP_S = 45.0


class BusIntake:
    """Consumes the stream as `durable` (one name per analyzer replica) into `store` until `stop()`."""

    def __init__(
        self,
        store: WindowStore,
        endpoint: BusEndpoint,
        durable: str = "analyzer",
        *,
        limits: StreamLimits = StreamLimits(),
        clock: Callable[[], int] = time.time_ns,
        in_thread: Callable[[], None] | None = None,
        checkpoint_every_s: float = CHECKPOINT_EVERY_S,
        partition: int | None = None,
        partials: PartialsOutbox | None = None,
        reconnect_catch_up_s: float = RECONNECT_CATCH_UP_S,
    ) -> None:
        """`in_thread` runs first in the intake's thread, before any socket is opened (the
        all-in-one moves the thread into the lab's namespace, where the bus is). `store`
        must be empty: it gets the replica's checkpoint once connected. `partition`: read
        only that partition of a partitioned stream (`durable` names the partition's replica);
        `partials`: the outbox `store` closes its slice intervals into (`slice_closed`), put on
        the bus for the combiner (analyzer.partials) after each batch taken and when idle."""
        self.store = store
        self.bus = endpoint
        self.durable = durable
        self.limits = limits
        self.messages_total = 0  # messages taken from the stream, refused ones included
        self.errors_total = 0  # failures of the loop itself (lost connection, a store bug)
        self.refusals_logged = 0  # the first MAX_ERRORS_LOGGED refusals are logged, all are counted
        self.checkpoint_every_s = checkpoint_every_s
        self.partition = partition
        self.partials = partials
        self.partials_published = 0  # reports put on the bus
        self.reconnect_catch_up_s = reconnect_catch_up_s
        self.disconnections_total = 0  # times the connection to the bus was lost
        self._link_up = False  # the consumer is made and the connection up now
        self.restored_seq: int | None = None  # the sequence of the checkpoint restored at start
        self.through_seq = 0  # the newest stream sequence taken (ingested or refused)
        self._failed_seq: int | None = None  # the oldest message a store failure left to come again
        self.checkpoints_total = 0
        self.checkpoint_failures = 0  # saves or a restore that failed (logged); the next save is another try
        self.connected = threading.Event()
        self._clock = clock
        self._in_thread = in_thread
        self._parser = ShipmentParser()
        self._stop = threading.Event()
        self._loop = bus_event_loop()
        self._task = self._loop.create_task(self._run())
        self._thread = threading.Thread(target=self._serve, name=f"xnetmon-bus-intake-{durable}", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        if self._in_thread is not None:
            self._in_thread()
        with contextlib.suppress(asyncio.CancelledError):
            self._loop.run_until_complete(self._task)
        self._loop.close()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the messages fetched, then close; a connection still being tried is given up."""
        self._stop.set()
        if not self.connected.is_set():
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(timeout)

    async def _run(self) -> None:
        client = await nats.connect(
            **self.bus.connect_options(),
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
        )
        try:
            js = client.jetstream()
            whole, objects = await until_done(lambda: self._streams(js), self._on_error, self._stop)
            start_seq = await self._restore(objects)
            subscription = await until_done(
                lambda: durable_consumer(
                    js,
                    STREAM_NAME,
                    whole if self.partition is None else partition_filter(self.partition),
                    self.durable,
                    start_seq + 1,
                    max_ack_pending=MAX_ACK_PENDING,
                ),
                self._on_error,
                self._stop,
            )
            self._link_up = True
            self.connected.set()
            size = 1
            saved_seq, next_save = start_seq, time.monotonic() + self.checkpoint_every_s
            while not self._stop.is_set():
                if time.monotonic() >= next_save:
                    if self.through_seq != saved_seq:
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
                    await self._publish_partials(js)  # intervals closed by time
                    continue
                except Exception as exc:  # the connection is away: the client reconnects
                    await self._see_link(client.is_connected)
                    await self._on_error(exc)
                    await asyncio.sleep(0.5)
                    continue
                size = pull_size(messages)
                for message in messages:
                    await self._take(message)
                await self._publish_partials(js)
            await self._publish_partials(js)
            if self.through_seq != saved_seq:
                await self._checkpoint(objects, saved_seq)  # the last one, so a restart replays nothing
        finally:
            await close_quietly(client)

    async def _streams(self, js):
        """The stream's consumer filter (`_ensure_stream`) and the checkpoints' object store,
        made if need be."""
        whole = await self._ensure_stream(js)
        if self.partials is not None:
            await ensure_stream(js, partials_stream_config())
        return whole, await checkpoint_store(js, self.limits.replicas)

    async def _restore(self, objects) -> int:
        """Load this replica's checkpoint into the store; the sequence it covers (0: none)."""
        name = f"checkpoint {CHECKPOINT_BUCKET}/{self.durable}"
        try:
            checkpoint = await load_checkpoint(objects, self.durable)
            if checkpoint is None:
                return 0
            restore_into(self.store, checkpoint.snapshot, name)
        except ValueError as exc:  # replaying the whole stream rebuilds what the stream still holds
            self.checkpoint_failures += 1
            log.error("%s cannot be used (%s); the stream is taken from its start", name, exc)
            return 0
        self.restored_seq = self.through_seq = checkpoint.seq
        log.info("analyzer state restored from %s, stream sequence %d", name, checkpoint.seq)
        return checkpoint.seq

    async def _checkpoint(self, objects, saved_seq: int) -> int:
        """Save the store with the sequence it covers; the sequence now saved."""
        # Read before the state, so the state covers at least this much; never past a message
        # still to come again.
        seq = self.through_seq if self._failed_seq is None else min(self.through_seq, self._failed_seq - 1)
        try:
            text = await asyncio.get_running_loop().run_in_executor(None, snapshot_text, self.store)
            await save_checkpoint(objects, self.durable, Checkpoint(seq, text))
        except Exception as exc:  # the bus or the store away: the next save is another try
            self.checkpoint_failures += 1
            if self.checkpoint_failures <= MAX_ERRORS_LOGGED:
                log.warning("checkpoint of %s not saved: %s: %s", self.durable, type(exc).__name__, exc)
            return saved_seq
        self.checkpoints_total += 1
        return seq

    async def _publish_partials(self, js) -> None:
        """What the store closed since the last report, to the combiner; kept for the next try
        when the bus does not take it."""
        if self.partials is None or self.partition is None:
            return
        self.store.advance(self._clock())  # intervals due by time close even while nothing comes
        while (report := self.partials.report(self.store)) is not None:
            try:
                await js.publish(partials_subject(self.partition), report.encode())
            except Exception as exc:  # the bus away: the outbox keeps them (bounded)
                await self._on_error(exc)
                return
            self.partials.sent(report)
            self.partials_published += 1

    async def _ensure_stream(self, js) -> str:
        """The stream made if need be; the consumer filter of all of it. nats-server 2.9 takes
        only a filter within one of the stream's subjects: a partitioned stream's one subject
        (an analyzer of every partition beside partition analyzers), else `xnet.>`."""
        await ensure_stream(js, stream_config(self.limits, partitioned=self.partition is not None))
        subjects = (await js.stream_info(STREAM_NAME)).config.subjects or []
        return subjects[0] if len(subjects) == 1 else f"{PREFIX}.>"

    async def _take(self, message) -> None:
        self.messages_total += 1
        try:
            batch = self._accept(message.subject, message.data)
        except Exception as exc:  # a store bug must not stop the intake: the message comes again
            seq = message.metadata.sequence.stream
            self._failed_seq = seq if self._failed_seq is None else min(self._failed_seq, seq)
            await self._on_error(exc)
            return
        seq = message.metadata.sequence.stream
        if seq == self._failed_seq:
            self._failed_seq = None  # taken at its redelivery
        self.through_seq = max(self.through_seq, seq)
        if batch is None:
            await message.term()
        else:
            await message.ack()

    def _accept(self, subject: str, data: bytes) -> ShipmentBatch | None:
        """Ingest one message's batch; None when it is refused (and counted)."""
        try:
            _, site = parse_subject(subject)
            batch = self._parser.parse(data)
        except (BadSubject, MalformedShipment) as exc:
            self.store.note_refused("malformed", 1)  # its windows cannot be told: the message counts
            self.refusals_logged += 1
            if self.refusals_logged <= MAX_ERRORS_LOGGED:
                log.warning("refused a bus message on %s: %s", subject, exc)
            return None
        # An observation's source may be an address, so the windows and health tell the site.
        forged = batch.site != site or any(w.key.source != site for w in batch.windows)
        if forged or (batch.health is not None and batch.health.site != site):
            self.store.note_refused("source-mismatch", len(batch.windows))
            self.refusals_logged += 1
            if self.refusals_logged <= MAX_ERRORS_LOGGED:
                log.warning(
                    "refused %d window(s) on %s: the body names another site than the subject's %s",
                    len(batch.windows),
                    subject,
                    site,
                )
            return None
        self.store.ingest(batch, self._clock())
        return batch

    def link(self) -> BusLink | None:
        """The connection's state for /metrics; None before the consumer was first made."""
        if not self.connected.is_set():
            return None
        return BusLink(self._link_up, self.disconnections_total)

    async def _see_link(self, up: bool) -> None:
        """The connection found up or down, by a callback or by the loop: each change once."""
        if up == self._link_up or not self.connected.is_set() or self._stop.is_set():
            return  # no change, still starting, or closing
        self._link_up = up
        if up:
            self.store.resume_time_closing(self._clock(), self.reconnect_catch_up_s)
        else:
            self.disconnections_total += 1
            self.store.suspend_time_closing()

    async def _on_disconnected(self) -> None:
        await self._see_link(False)

    async def _on_reconnected(self) -> None:
        await self._see_link(True)

    async def _on_error(self, exc: Exception) -> None:
        if self._stop.is_set():
            return  # TLS teardown noise while closing
        self.errors_total += 1
        if self.errors_total <= MAX_ERRORS_LOGGED:
            log.warning("bus intake %s: %s: %s", self.durable, type(exc).__name__, exc)


async def close_quietly(client) -> None:
    """Close the connection; a TLS transport the server already tore down (nats-py then
    fails inside close) leaves nothing to close."""
    try:
        await client.close()
    except (AttributeError, OSError) as exc:
        log.debug("closing the bus connection: %s: %s", type(exc).__name__, exc)


def pull_size(messages) -> int:
    """How many messages the next pull asks for, after `messages`: a backlog's batch, fewer
    when its bodies are large (PULL_BYTES)."""
    largest = max((len(m.data) for m in messages), default=0)
    return max(1, min(FETCH_BATCH, PULL_BYTES // max(1, largest)))


async def until_done(step, on_error, stopping: threading.Event):
    """`step()`'s result, tried again until it comes: JetStream may not answer yet (a cluster
    still electing its leaders, a server starting), and an intake that gave up then would never
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
