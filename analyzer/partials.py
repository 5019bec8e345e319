"""What a partition of a partitioned analysis tells its combiner: per slice and closed
interval, its partial sums (`IntervalStats`), and how far each slice is closed.

A partition analyzer judges the paths of its sites only (collector.bus.subjects: the bus
maps each site into one partition). A slice's verdict needs every path of the slice, so
each partition passes what its store closes on (`WindowStore(slice_closed=outbox)`), and the
combiner (analyzer.combiner) adds the partitions' sums of an interval into one
`IntervalStats` for the slice's tracker. Every field of `IntervalStats` is a sum, a bound of
the interval or a worst value (`IntervalStats.merged`), so the combined verdict is the one
a single analyzer of every path gives.

On the bus: one `PartitionReport` a message, on `partials_subject(PARTITION)`, in the stream
`PARTIALS_STREAM` (file storage, a day of reports), published by a partition's intake after
each batch it takes and when idle (`PartialsOutbox.report`), read by the combiners' durable
consumers. A report carries the partition's watermarks (`closed_through`: per slice, the
interval up to which no window will feed its verdict any more), read before its intervals
are taken: every interval up to a watermark is in this report or an earlier one, so a
combiner that has every partition's watermark past an interval has all of its sums.

JSON, validated with pydantic at the combiner (the bus is an edge): every number bounded,
the counts adding up as in a window (received and losses within sent, the histogram holding
the replies), at most `MAX_REPORT_INTERVALS` intervals and `MAX_SLICES` slices a report.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Annotated, Self, TypeVar

from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from analyzer.sla.series import IntervalStats
from collector.bus.subjects import MAX_PARTITIONS
from collector.contract.records import RTT_BUCKETS_NS

PARTIALS_STREAM = "XNET_PARTIALS"
PARTIALS_PREFIX = "xnet-partials"  # not under `xnet.`: the sites' partition mapping covers `xnet.*.*`
PARTIALS_SUBJECTS = (f"{PARTIALS_PREFIX}.*",)  # the stream's: what partition analyzers publish on
_API = "$JS.API"


def partials_permissions(durable: str = "*") -> tuple[str, ...]:
    """What an analyzer publishes for the partitions' reports, and no more (beside the windows
    stream's `collector.bus.stream.reader_subjects`): the reports, the stream made when
    missing and its info, a combiner's durable consumer (`durable`: one name, or `*` for any)
    made anew, looked up and deleted, pulls and acks."""
    return (
        *PARTIALS_SUBJECTS,
        f"{_API}.STREAM.CREATE.{PARTIALS_STREAM}",
        f"{_API}.STREAM.INFO.{PARTIALS_STREAM}",
        f"{_API}.CONSUMER.CREATE.{PARTIALS_STREAM}.{durable}.>",
        *(f"{_API}.CONSUMER.{verb}.{PARTIALS_STREAM}.{durable}" for verb in ("INFO", "DELETE", "MSG.NEXT")),
        f"$JS.ACK.{PARTIALS_STREAM}.{durable}.>",
    )


PARTIALS_PERMISSIONS = partials_permissions()  # the shared analyzer identity's: any combiner's consumer
MAX_REPORT_INTERVALS = 2_048  # per message: ~1 MB at most
MAX_OUTBOX_INTERVALS = 100_000  # closed intervals waiting for the bus; beyond, the oldest go (counted)
MAX_SLICES = 1_024
MAX_INT = 2**63 - 1
PARTIALS_MAX_AGE_S = 24 * 3600.0
PARTIALS_MAX_BYTES = 1 << 30

NonNegative = Annotated[int, Field(ge=0, le=MAX_INT)]
Worst = Annotated[int | None, Field(ge=-MAX_INT, le=MAX_INT)]
SliceName = Annotated[str, Field(min_length=1, max_length=255)]
IntervalNumber = Annotated[int, Field(ge=-1, le=MAX_INT)]


def partials_subject(partition: int) -> str:
    return f"{PARTIALS_PREFIX}.{partition}"


def partials_stream_config() -> StreamConfig:
    return StreamConfig(
        name=PARTIALS_STREAM,
        subjects=list(PARTIALS_SUBJECTS),
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_age=PARTIALS_MAX_AGE_S,
        max_bytes=PARTIALS_MAX_BYTES,
        max_msg_size=8 << 20,
    )


M = TypeVar("M", bound=BaseModel)


class MalformedReport(ValueError):
    """A partials message the combiner refuses (and counts)."""


def validated(model: type[M], text: bytes, what: str) -> M:
    """`text` as a `model`, or MalformedReport naming the first field that is wrong."""
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise MalformedReport(f"{where or what}: {first['msg']}") from None


class PartialStats(BaseModel):
    """`IntervalStats` on the wire, field for field."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    start_ns: NonNegative
    end_ns: NonNegative
    paths: Annotated[int, Field(ge=1, le=MAX_INT)]
    sent: NonNegative
    received: NonNegative
    lost_forward: NonNegative
    lost_reverse: NonNegative
    lost_unknown: NonNegative
    rtt_buckets: Annotated[
        tuple[NonNegative, ...], Field(min_length=len(RTT_BUCKETS_NS) + 1, max_length=len(RTT_BUCKETS_NS) + 1)
    ]
    worst_ipdv_mean_abs_ns: Worst
    worst_pdv_p99_ns: Worst
    worst_forward_owd_p99_ns: Worst
    worst_reverse_owd_p99_ns: Worst
    worst_clock_error_ns: Worst
    unavailable_paths: NonNegative

    @model_validator(mode="after")
    def _adds_up(self) -> Self:
        if self.end_ns <= self.start_ns:
            raise ValueError("end_ns must be after start_ns")
        if self.received + self.lost_forward + self.lost_reverse + self.lost_unknown > self.sent:
            raise ValueError("received and lost add up to more than sent")
        if sum(self.rtt_buckets) != self.received:
            raise ValueError("the histogram does not hold the replies received")
        if self.unavailable_paths > self.paths:
            raise ValueError("more unavailable paths than paths")
        return self

    @classmethod
    def of(cls, stats: IntervalStats) -> PartialStats:
        return cls.model_construct(**{name: getattr(stats, name) for name in cls.model_fields})

    def stats(self) -> IntervalStats:
        return IntervalStats(**{name: getattr(self, name) for name in type(self).model_fields})


class SliceInterval(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    slice: SliceName
    stats: PartialStats


class PartitionReport(BaseModel):
    """One partition's news: the slice intervals it closed since its last report, and its
    watermarks (slice -> interval number closed through, -1: none yet)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    partition: Annotated[int, Field(ge=0, lt=MAX_PARTITIONS)]
    partitions: Annotated[int, Field(ge=1, le=MAX_PARTITIONS)]
    interval_ns: Annotated[int, Field(ge=1, le=MAX_INT)]
    judged_through_ns: NonNegative
    closed_through: Annotated[dict[SliceName, IntervalNumber], Field(max_length=MAX_SLICES)]
    intervals: Annotated[tuple[SliceInterval, ...], Field(max_length=MAX_REPORT_INTERVALS)] = ()

    @model_validator(mode="after")
    def _in_range(self) -> Self:
        if self.partition >= self.partitions:
            raise ValueError(f"partition {self.partition} of {self.partitions}")
        return self

    def encode(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def decode(cls, data: bytes) -> PartitionReport:
        return validated(cls, data, "report")


class PartialsOutbox:
    """A partition store's closed slice intervals until they are on the bus: the store's
    `slice_closed` callback (called under the store's lock), read by the intake's loop."""

    def __init__(self, partition: int, partitions: int, max_intervals: int = MAX_OUTBOX_INTERVALS) -> None:
        if not 0 <= partition < partitions:
            raise ValueError(f"partition {partition} of {partitions}")
        self.partition = partition
        self.partitions = partitions
        self.dropped = 0  # intervals that never reached the bus because the outbox was full
        self._waiting: deque[tuple[int, SliceInterval]] = deque()  # (serial, interval), oldest first
        self._serial = 0
        self._reported_through = 0  # the serial of the newest interval in the report being sent
        self._max = max_intervals
        self._lock = threading.Lock()
        self._last_marks: tuple[dict[str, int], int] | None = None  # the watermarks last sent

    def __call__(self, slice_name: str, stats: IntervalStats) -> None:
        with self._lock:
            if len(self._waiting) >= self._max:
                self._waiting.popleft()
                self.dropped += 1
            self._serial += 1
            interval = SliceInterval.model_construct(slice=slice_name, stats=PartialStats.of(stats))
            self._waiting.append((self._serial, interval))

    def report(self, store) -> PartitionReport | None:
        """The next report of `store` (an `analyzer.store.memory.WindowStore` fed by this
        outbox), or None when nothing changed since the last one sent. Left in the outbox
        until `sent(report)`."""
        # The watermarks first: every interval they cover has been handed to the outbox.
        marks = (store.closed_through(), store.judged_through_ns)
        with self._lock:
            taken = [self._waiting[i] for i in range(min(len(self._waiting), MAX_REPORT_INTERVALS))]
            intervals = tuple(interval for _, interval in taken)
            self._reported_through = taken[-1][0] if taken else self._serial
            if len(taken) < len(self._waiting):  # the rest first; the watermarks wait for them
                marks = self._last_marks or ({name: -1 for name in marks[0]}, 0)
        if not intervals and marks == self._last_marks:
            return None
        return PartitionReport.model_construct(
            partition=self.partition,
            partitions=self.partitions,
            interval_ns=store.interval_ns,
            judged_through_ns=marks[1],
            closed_through=marks[0],
            intervals=intervals,
        )

    def sent(self, report: PartitionReport) -> None:
        """`report`, the latest from `report()`, is on the bus: its intervals leave the outbox."""
        with self._lock:
            while self._waiting and self._waiting[0][0] <= self._reported_through:
                self._waiting.popleft()
            self._last_marks = (dict(report.closed_through), report.judged_through_ns)

    def __len__(self) -> int:
        with self._lock:
            return len(self._waiting)
