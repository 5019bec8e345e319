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
The partitions' root-cause epochs come on the same subjects, marked by the header
`EVIDENCE_HEADER` (analyzer.partial_evidence), and go to a `CombinedInference`
(analyzer.combiner_epochs); they do not hold the checkpoint back: a restarted combiner
infers again from the epochs after its checkpoint, and hints need no more than the last
few intervals.
nats-py is asyncio: the intake runs its own event loop on a thread of its own
(analyzer/bus_consumer.py, shared with the analyzer's bus intake).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from analyzer.bus_checkpoint import checkpoint_store
from analyzer.bus_consumer import CHECKPOINT_EVERY_S, MAX_ERRORS_LOGGED, BusConsumer, durable_consumer, ensure_stream
from analyzer.combiner import PartialsCombiner
from analyzer.combiner_epochs import CombinedInference
from analyzer.partial_evidence import EVIDENCE_HEADER, PartitionEvidence
from analyzer.partials import PARTIALS_PREFIX, PARTIALS_STREAM, MalformedReport, PartitionReport, partials_stream_config
from collector.bus.connection import BusEndpoint

log = logging.getLogger(__name__)


class CombinerIntake(BusConsumer):
    """Consumes the partitions' reports as `durable` (one name per combiner replica) into
    `combiner` until `stop()`."""

    role = "combiner"
    stream = PARTIALS_STREAM

    def __init__(
        self,
        combiner: PartialsCombiner,
        endpoint: BusEndpoint,
        durable: str = "combiner",
        *,
        clock: Callable[[], int] = time.time_ns,
        in_thread: Callable[[], None] | None = None,
        checkpoint_every_s: float = CHECKPOINT_EVERY_S,
        inference: CombinedInference | None = None,
    ) -> None:
        """`combiner`'s store must be empty: it gets the checkpoint once connected.
        `inference`: takes the partitions' epochs (without it they are acked and left), and
        stops with the intake."""
        self.combiner = combiner
        self.inference = inference
        self.refused_total = 0  # reports and epochs refused: malformed, or of another partitioning
        self.evidence_total = 0  # partitions' epochs taken
        super().__init__(
            combiner.store, endpoint, durable, clock=clock, in_thread=in_thread, checkpoint_every_s=checkpoint_every_s
        )

    def stop(self, timeout: float = 10.0, final_checkpoint: bool = True) -> None:
        super().stop(timeout, final_checkpoint)
        if self.inference is not None:
            self.inference.stop()

    async def _set_up(self, js):
        """The partials stream made if need be; the checkpoints' object store."""
        await ensure_stream(js, partials_stream_config())
        return await checkpoint_store(js)

    async def _subscribe(self, js, start_seq: int):
        return await durable_consumer(js, PARTIALS_STREAM, f"{PARTIALS_PREFIX}.*", self.durable, start_seq)

    def _covered_seq(self) -> int:
        """Short of the oldest report still waited on."""
        oldest = self.combiner.oldest_waiting_seq()
        return self.through_seq if oldest is None else min(self.through_seq, oldest - 1)

    async def _when_idle(self) -> None:
        try:  # intervals and epochs past their grace close while no report comes
            self.combiner.advance(self._clock())
            if self.inference is not None:
                self.inference.advance(self._clock())
        except Exception as exc:  # a bug must not stop the intake; counted and logged
            self._count_error(exc)

    async def _take(self, message) -> None:
        self.messages_total += 1
        if EVIDENCE_HEADER in (message.headers or {}):
            await self._take_evidence(message)
            return
        try:
            report = PartitionReport.decode(message.data)
        except MalformedReport as exc:
            await self._refuse(message, exc)
            return
        try:
            seq = message.metadata.sequence.stream
            taken = self.combiner.add(report, self._clock(), seq)
        except Exception as exc:  # a bug must not stop the intake: the report comes again
            self._count_error(exc)
            return
        self.through_seq = max(self.through_seq, seq)
        if not taken:
            await self._refuse(message, f"partition {report.partition} of {report.partitions}")
            return
        await message.ack()

    async def _take_evidence(self, message) -> None:
        try:
            evidence = PartitionEvidence.decode(message.data)
        except MalformedReport as exc:
            await self._refuse(message, exc)
            return
        self.through_seq = max(self.through_seq, message.metadata.sequence.stream)
        if self.inference is not None:
            try:
                self.inference.add(evidence, self._clock())
            except MalformedReport as exc:
                await self._refuse(message, exc)
                return
            except Exception as exc:  # a bug must not stop the intake; counted, the epoch is lost
                self._count_error(exc)
        self.evidence_total += 1
        await message.ack()

    async def _refuse(self, message, why: object) -> None:
        """Count and log a message the combiner cannot take, and end it: it would never fit."""
        self.refused_total += 1
        if self.refused_total <= MAX_ERRORS_LOGGED:
            log.warning("refused a partition report on %s: %s", message.subject, why)
        await message.term()
