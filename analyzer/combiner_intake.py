"""The combiner's side of the bus: a durable pull consumer on the partitions' reports
(`analyzer.partials.PARTIALS_STREAM`) that feeds a `PartialsCombiner`, whose store then
answers /slices and /metrics as one analyzer over every path would.

The combiner keeps no checkpoint: at each start it re-creates its consumer from the
stream's start and rebuilds its slice trackers from every report the stream holds (a day of
them, `PARTIALS_MAX_AGE_S`; reports are small: one per partition and batch). A report the
combiner refuses (malformed, or of another partitioning) is terminated and counted.
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
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from analyzer.bus_intake import (
    ACK_WAIT_S,
    BACKLOG_WAIT_S,
    FETCH_BATCH,
    IDLE_WAIT_S,
    MAX_ERRORS_LOGGED,
    close_quietly,
    ensure_stream,
)
from analyzer.combiner import PartialsCombiner
from analyzer.partials import PARTIALS_PREFIX, PARTIALS_STREAM, MalformedReport, PartitionReport, partials_stream_config
from collector.bus.connection import BusEndpoint

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
    ) -> None:
        self.combiner = combiner
        self.bus = endpoint
        self.durable = durable
        self.messages_total = 0
        self.refused_total = 0  # reports refused: malformed, or of another partitioning
        self.errors_total = 0  # failures of the loop itself
        self.connected = threading.Event()
        self._clock = clock
        self._in_thread = in_thread
        self._stop = threading.Event()
        self._loop = asyncio.new_event_loop()
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
            await ensure_stream(js, partials_stream_config())
            with contextlib.suppress(NotFoundError):  # the stream's start, not an ack floor: see the docstring
                await js.delete_consumer(PARTIALS_STREAM, self.durable)
            subscription = await js.pull_subscribe(
                f"{PARTIALS_PREFIX}.*",
                durable=self.durable,
                stream=PARTIALS_STREAM,
                config=ConsumerConfig(
                    ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL, ack_wait=ACK_WAIT_S
                ),
            )
            self.connected.set()
            size = 1
            while not self._stop.is_set():
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
        finally:
            await close_quietly(client)

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
            taken = self.combiner.add(report, self._clock())
        except Exception as exc:  # a bug must not stop the intake: the report comes again
            self._count_error(exc)
            return
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
