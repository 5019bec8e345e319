"""The combiner's side of the bus: a durable pull consumer on the partitions' reports
(`analyzer.partials.PARTIALS_STREAM`) that feeds a `PartialsCombiner`, whose store then
answers /slices and /metrics as one analyzer over every path would.

Its store is checkpointed on the bus like a replica's (analyzer.bus_checkpoint, the object
named after its durable consumer, every `checkpoint_every_s`), with the sequence of the
partials stream it covers: everything before the oldest report an interval still waits on.
At each start it restores its checkpoint into its (empty) store and re-creates its consumer
to deliver from that sequence + 1 (the stream's start without one); intervals the restored
trackers hold already are not added again. A report the combiner refuses (malformed, or of
another partitioning) is terminated and counted.
nats-py is asyncio: the intake runs its own event loop on a thread of its own.
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

from analyzer.bus_checkpoint import CHECKPOINT_BUCKET, Checkpoint, checkpoint_store, load_checkpoint, save_checkpoint
from analyzer.bus_intake import (
    BACKLOG_WAIT_S,
    CHECKPOINT_EVERY_S,
    FETCH_BATCH,
    IDLE_WAIT_S,
    MAX_ERRORS_LOGGED,
    close_quietly,
    durable_consumer,
    ensure_stream,
    until_done,
)
from analyzer.combiner import PartialsCombiner
from analyzer.partials import PARTIALS_PREFIX, PARTIALS_STREAM, MalformedReport, PartitionReport, partials_stream_config
from analyzer.store.snapshot import restore_into, snapshot_text
from collector.bus.connection import BusEndpoint, bus_event_loop

log = logging.getLogger(__name__)


class CombinerIntake:
    """Consumes the partitions' reports as `durable` (one name per combiner replica) into
    `combiner` until `stop()`."""

    def __init__(
        self,
        combiner: PartialsCombiner,
        endpoint: BusEndpoint,
        durable: str = "combiner",
        *,
        clock: Callable[[], int] = time.time_ns,
        in_thread: Callable[[], None] | None = None,
        checkpoint_every_s: float = CHECKPOINT_EVERY_S,
    ) -> None:
        """`combiner`'s store must be empty: it gets the checkpoint once connected."""
        self.combiner = combiner
        self.checkpoint_every_s = checkpoint_every_s
        self.restored_seq: int | None = None
        self.through_seq = 0  # the newest stream sequence taken
        self.checkpoints_total = 0
        self.checkpoint_failures = 0
        self.bus = endpoint
        self.durable = durable
        self.messages_total = 0
        self.refused_total = 0  # reports refused: malformed, or of another partitioning
        self.errors_total = 0  # failures of the loop itself
        self.connected = threading.Event()
        self._clock = clock
        self._in_thread = in_thread
        self._stop = threading.Event()
        self._loop = bus_event_loop()
        self._task = self._loop.create_task(self._run())
        self._thread = threading.Thread(target=self._serve, name=f"xnetmon-combiner-{durable}", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        if self._in_thread is not None:
            self._in_thread()
        with contextlib.suppress(asyncio.CancelledError):
            self._loop.run_until_complete(self._task)
        self._loop.close()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if not self.connected.is_set():
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(timeout)

    async def _run(self) -> None:
        client = await nats.connect(**self.bus.connect_options(), error_cb=self._on_error)
        try:
            js = client.jetstream()
            objects = await until_done(lambda: self._streams(js), self._on_error, self._stop)
            start = await self._restore(objects) + 1
            subscription = await until_done(
                lambda: durable_consumer(js, PARTIALS_STREAM, f"{PARTIALS_PREFIX}.*", self.durable, start),
                self._on_error,
                self._stop,
            )
            self.connected.set()
            size = 1
            next_save = time.monotonic() + self.checkpoint_every_s
            while not self._stop.is_set():
                if time.monotonic() >= next_save:
                    await self._checkpoint(objects)
                    next_save = time.monotonic() + self.checkpoint_every_s
                try:
                    messages = await subscription.fetch(size, timeout=IDLE_WAIT_S if size == 1 else BACKLOG_WAIT_S)
                except (TimeoutError, NatsTimeout):
                    size = 1
                    self._advance()  # intervals past their grace close while no report comes
                    continue
                except Exception as exc:  # the connection is away: the client reconnects
                    await self._on_error(exc)
                    await asyncio.sleep(0.5)
                    continue
                size = FETCH_BATCH
                for message in messages:
                    await self._take(message)
            await self._checkpoint(objects)  # the last one, so a restart replays little
        finally:
            await close_quietly(client)

    async def _streams(self, js):
        """The partials stream and the checkpoints' object store, made if need be."""
        await ensure_stream(js, partials_stream_config())
        return await checkpoint_store(js)

    async def _restore(self, objects) -> int:
        """This combiner's checkpoint into its store; the stream sequence it covers (0: none)."""
        name = f"checkpoint {CHECKPOINT_BUCKET}/{self.durable}"
        try:
            checkpoint = await load_checkpoint(objects, self.durable)
            if checkpoint is None:
                return 0
            restore_into(self.combiner.store, checkpoint.snapshot, name)
        except ValueError as exc:  # the stream's reports rebuild what it still holds
            self.checkpoint_failures += 1
            log.error("%s cannot be used (%s); the reports are taken from the stream's start", name, exc)
            return 0
        self.restored_seq = self.through_seq = checkpoint.seq
        log.info("combiner state restored from %s, partials stream sequence %d", name, checkpoint.seq)
        return checkpoint.seq

    async def _checkpoint(self, objects) -> None:
        """The store with the sequence it covers: short of the oldest report still waited on."""
        oldest = self.combiner.oldest_waiting_seq()
        seq = self.through_seq if oldest is None else min(self.through_seq, oldest - 1)
        try:
            text = await asyncio.get_running_loop().run_in_executor(None, snapshot_text, self.combiner.store)
            await save_checkpoint(objects, self.durable, Checkpoint(seq, text))
        except Exception as exc:  # the bus away: the next save is another try
            self.checkpoint_failures += 1
            if self.checkpoint_failures <= MAX_ERRORS_LOGGED:
                log.warning("checkpoint of %s not saved: %s: %s", self.durable, type(exc).__name__, exc)
            return
        self.checkpoints_total += 1

    def _advance(self) -> None:
        try:
            self.combiner.advance(self._clock())
        except Exception as exc:  # a bug must not stop the intake; counted and logged
            self._count_error(exc)

    async def _take(self, message) -> None:
        self.messages_total += 1
        try:
            report = PartitionReport.decode(message.data)
        except MalformedReport as exc:
            self._refused(message.subject, exc)
            await message.term()
            return
        try:
            seq = message.metadata.sequence.stream
            taken = self.combiner.add(report, self._clock(), seq)
        except Exception as exc:  # a bug must not stop the intake: the report comes again
            self._count_error(exc)
            return
        self.through_seq = max(self.through_seq, seq)
        if not taken:
            self._refused(message.subject, f"partition {report.partition} of {report.partitions}")
            await message.term()
            return
        await message.ack()

    def _refused(self, subject: str, why: object) -> None:
        self.refused_total += 1
        if self.refused_total <= MAX_ERRORS_LOGGED:
            log.warning("refused a partition report on %s: %s", subject, why)

    def _count_error(self, exc: Exception) -> None:
        self.errors_total += 1
        if self.errors_total <= MAX_ERRORS_LOGGED:
            log.warning("combiner %s: %s: %s", self.durable, type(exc).__name__, exc)

    async def _on_error(self, exc: Exception) -> None:
        if not self._stop.is_set():  # else TLS teardown noise while closing
            self._count_error(exc)
