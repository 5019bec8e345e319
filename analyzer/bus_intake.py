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
(`TLS_SHUTDOWN_TIMEOUT_S` in the consumer's `bus_event_loop`; asyncio's own 30 s elsewhere).
`link()` is what /metrics shows of it (xnet_analyzer_bus_connected).

nats-py is asyncio: the intake runs its own event loop on a thread of its own
(analyzer/bus_consumer.py, shared with the combiner's intake); ingest happens on that
thread, under the store's lock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from analyzer.bus_checkpoint import checkpoint_store
from analyzer.bus_consumer import (
    CHECKPOINT_EVERY_S,
    FETCH_BATCH,
    MAX_ERRORS_LOGGED,
    BusConsumer,
    durable_consumer,
    ensure_stream,
)
from analyzer.exporter import BusLink
from analyzer.partial_evidence import EVIDENCE_HEADER, EvidenceOutbox
from analyzer.partials import PartialsOutbox, partials_stream_config, partials_subject
from analyzer.store.memory import WindowStore
from collector.bus.connection import BusEndpoint
from collector.bus.stream import STREAM_NAME, StreamLimits, stream_config
from collector.bus.subjects import PREFIX, BadSubject, parse_subject, partition_filter
from collector.contract.codec import MalformedShipment, ShipmentParser
from collector.contract.shipment import ShipmentBatch

log = logging.getLogger(__name__)

# Bytes one pull may ask for (judged by the largest message of the last one): what the server
# writes to an analyzer that its CPU is starved of must drain within nats-server's write
# deadline (10 s), or the server drops it as a slow consumer and every message comes again
# after the ack wait. 256 bodies of 500 windows are ~90 MB; this keeps a pull to a few MB.
PULL_BYTES = 4 << 20
MAX_ACK_PENDING = 4096
# After the bus returns, agents retry within their backoff's cap (30 s) and a send's
# timeout (10 s): their spooled windows are in by then.
RECONNECT_CATCH_UP_S = 45.0


class BusIntake(BusConsumer):
    """Consumes the stream as `durable` (one name per analyzer replica) into `store` until `stop()`."""

    role = "bus intake"
    stream = STREAM_NAME

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
        evidence: EvidenceOutbox | None = None,
        reconnect_catch_up_s: float = RECONNECT_CATCH_UP_S,
    ) -> None:
        """`in_thread` runs first in the intake's thread, before any socket is opened (the
        all-in-one moves the thread into the lab's namespace, where the bus is). `store`
        must be empty: it gets the replica's checkpoint once connected. `partition`: read
        only that partition of a partitioned stream (`durable` names the partition's replica);
        `partials`: the outbox `store` closes its slice intervals into (`slice_closed`), put on
        the bus for the combiner (analyzer.partials) after each batch taken and when idle;
        `evidence`: the partition's root-cause epochs (analyzer.partial_evidence), sent after them."""
        self.store = store
        self.limits = limits
        self.refusals_logged = 0  # the first MAX_ERRORS_LOGGED refusals are logged, all are counted
        self.partition = partition
        self.partials = partials
        self.partials_published = 0  # reports put on the bus
        self.evidence = evidence
        self.evidence_published = 0  # epochs put on the bus
        self.reconnect_catch_up_s = reconnect_catch_up_s
        self.disconnections_total = 0  # times the connection to the bus was lost
        self._link_up = False  # the consumer is made and the connection up now
        self._failed_seq: int | None = None  # the oldest message a store failure left to come again
        self._parser = ShipmentParser()
        super().__init__(
            store, endpoint, durable, clock=clock, in_thread=in_thread, checkpoint_every_s=checkpoint_every_s
        )

    def _connect_options(self) -> dict[str, Any]:
        return {"disconnected_cb": self._on_disconnected, "reconnected_cb": self._on_reconnected}

    async def _set_up(self, js):
        """The stream (and the partials' stream) made if need be, the consumer filter of all of
        it (`_ensure_stream`); the checkpoints' object store."""
        self._whole = await self._ensure_stream(js)
        if self.partials is not None:
            await ensure_stream(js, partials_stream_config())
        return await checkpoint_store(js, self.limits.replicas)

    async def _subscribe(self, js, start_seq: int):
        subject = self._whole if self.partition is None else partition_filter(self.partition)
        subscription = await durable_consumer(
            js, STREAM_NAME, subject, self.durable, start_seq, max_ack_pending=MAX_ACK_PENDING
        )
        self._link_up = True
        return subscription

    def _covered_seq(self) -> int:
        # Never past a message still to come again.
        return self.through_seq if self._failed_seq is None else min(self.through_seq, self._failed_seq - 1)

    def _checkpoint_due(self, saved_seq: int) -> bool:
        return self.through_seq != saved_seq

    def _next_pull_size(self, messages: list) -> int:
        return pull_size(messages)

    async def _when_idle(self) -> None:
        await self._publish_partials()  # intervals closed by time

    async def _after_taking(self) -> None:
        await self._publish_partials()

    async def _publish_partials(self) -> None:
        """What the store closed since the last report, to the combiner; kept for the next try
        when the bus does not take it."""
        if self.partials is None or self.partition is None:
            return
        self.store.advance(self._clock())  # intervals due by time close even while nothing comes
        while (report := self.partials.report(self.store)) is not None:
            try:
                await self._js.publish(partials_subject(self.partition), report.encode())
            except Exception as exc:  # the bus away: the outbox keeps them (bounded)
                await self._on_error(exc)
                return
            self.partials.sent(report)
            self.partials_published += 1
        while self.evidence is not None and (epoch := self.evidence.take()) is not None:
            at_ns, message = epoch
            try:
                await self._js.publish(partials_subject(self.partition), message, headers={EVIDENCE_HEADER: str(at_ns)})
            except Exception as exc:  # the bus away: the outbox keeps them (bounded)
                await self._on_error(exc)
                return
            self.evidence.sent(at_ns)
            self.evidence_published += 1

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


def pull_size(messages) -> int:
    """How many messages the next pull asks for, after `messages`: a backlog's batch, fewer
    when its bodies are large (PULL_BYTES)."""
    largest = max((len(m.data) for m in messages), default=0)
    return max(1, min(FETCH_BATCH, PULL_BYTES // max(1, largest)))
