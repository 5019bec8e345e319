"""What a partition of a partitioned analysis tells its combiner for root-cause inference:
its epoch's evidence (analyzer.rootcause.evidence: `PathEvidence` per path of its sites,
`HostHealth` per agent of its sites), once per closed interval.

Inference needs every path that crosses a component, whichever partition holds it, and a
path's reverse route is the trace its target's agent made, usually in another partition;
so partitions build their epochs as a single analyzer does (routes, baselines and path
changes stay with the partition that sees the windows) and the combiner
(analyzer.combiner_epochs) runs the engine over their union.

On the bus: one `PartitionEvidence` a message on the partition's reports subject
(analyzer.partials.partials_subject) in the stream `PARTIALS_STREAM`, marked with the
header `EVIDENCE_HEADER` (so one durable consumer of the combiner reads both, in the order
the partition sent them), published by the partition's intake beside its reports.

Deflated JSON (zlib, level 1: a quarter of the JSON's bytes for ~1.5 ms per 1,000 paths;
inflated at the combiner to at most `MAX_INFLATED` bytes): every component, site and slice
name once in a per-message table `names`, a path a row of indices and numbers (`PathRow`),
a host a row too (`HostRow`). Validated with pydantic at the combiner (the bus is an edge):
every index within the table, every count bounded and adding up (losses within sent),
delays finite and within an hour, at most `MAX_PATHS` paths, `MAX_NAMES` names and
`MAX_ROUTE` components a route. Floats go as JSON numbers, which round-trip exactly, so the
combiner's engine sees the partition's figures.
"""

from __future__ import annotations

import threading
import zlib
from collections import deque
from collections.abc import Sequence
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from analyzer.partials import MAX_INT, MalformedReport, validated
from analyzer.rootcause.model import Epoch, HostHealth, PathEvidence
from collector.bus.subjects import MAX_PARTITIONS

EVIDENCE_HEADER = "Xnet-Evidence"  # its value: the epoch's end (ns); a report has no such header
MAX_PATHS = 131_072  # per partition: a national partition holds ~13,440, one of 10x ~14,930
MAX_NAMES = 262_144
MAX_ROUTE = 256  # components of one route, pseudo-components included
MAX_HOSTS = 16_384
MAX_REASON = 1_024
MAX_SECONDS = 3_600.0
MAX_INFLATED = 64 << 20  # MAX_PATHS rows of ~500 B
MAX_OUTBOX_EPOCHS = 8  # epochs waiting for the bus; beyond, the oldest go (counted)

Index = Annotated[int, Field(ge=0, lt=MAX_NAMES)]
NoIndex = Annotated[int, Field(ge=-1, lt=MAX_NAMES)]  # -1: none
Count = Annotated[int, Field(ge=0, le=MAX_INT)]
MaybeCount = Annotated[int | None, Field(ge=0, le=MAX_INT)]
Seconds = Annotated[float | None, Field(ge=0.0, le=MAX_SECONDS, allow_inf_nan=False)]
Step = Annotated[float | None, Field(ge=-MAX_SECONDS, le=MAX_SECONDS, allow_inf_nan=False)]
Route = Annotated[tuple[Index, ...], Field(max_length=MAX_ROUTE)]
Name = Annotated[str, Field(min_length=1, max_length=255)]

# (path_id, source, target, target_site or -1, slice, forward, reverse, sent, lost, forward_lost,
#  reverse_lost, delay_s, baseline_delay_s, jitter_s, baseline_jitter_s, path_changed,
#  delay_delta_s, previous_forward, previous_reverse): `PathEvidence`'s fields in order, names
# as indices into the message's table
PathRow = tuple[
    Index,
    Index,
    Index,
    NoIndex,
    Index,
    Route,
    Route | None,
    Count,
    Count,
    MaybeCount,
    MaybeCount,
    Seconds,
    Seconds,
    Seconds,
    Seconds,
    bool,
    Step,
    Route | None,
    Route | None,
]
HostRow = tuple[Index, bool, Annotated[str, Field(max_length=MAX_REASON)]]  # (site, healthy, reason)


class PartitionEvidence(BaseModel):
    """One partition's epoch ending at `at_ns`."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    partition: Annotated[int, Field(ge=0, lt=MAX_PARTITIONS)]
    partitions: Annotated[int, Field(ge=1, le=MAX_PARTITIONS)]
    interval_ns: Annotated[int, Field(ge=1, le=MAX_INT)]
    at_ns: Annotated[int, Field(ge=0, le=MAX_INT)]
    names: Annotated[tuple[Name, ...], Field(max_length=MAX_NAMES)]
    paths: Annotated[tuple[PathRow, ...], Field(max_length=MAX_PATHS)] = ()
    hosts: Annotated[tuple[HostRow, ...], Field(max_length=MAX_HOSTS)] = ()

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.partition >= self.partitions:
            raise ValueError(f"partition {self.partition} of {self.partitions}")
        if self.at_ns % self.interval_ns:
            raise ValueError("at_ns is not an interval's end")
        top = len(self.names)
        for row in self.paths:
            indices = [*row[:5], *row[5], *(row[6] or ()), *(row[17] or ()), *(row[18] or ())]
            if max(indices) >= top:
                raise ValueError(f"path {row[0]}: a name index beyond the table of {top}")
            sent, lost, forward_lost, reverse_lost = row[7:11]
            if lost > sent or (forward_lost or 0) > sent or (reverse_lost or 0) > sent:
                raise ValueError(f"path {row[0]}: more lost than sent")
        if any(site >= top for site, _healthy, _reason in self.hosts):
            raise ValueError(f"a host's index beyond the table of {top}")
        return self

    @classmethod
    def of(cls, epoch: Epoch, partition: int, partitions: int, interval_ns: int) -> PartitionEvidence:
        table: dict[str, int] = {}

        def index(name: str | None) -> int:
            if name is None:
                return -1
            found = table.get(name)
            if found is None:
                found = table[name] = len(table)
            return found

        def route(names: Sequence[str] | None) -> tuple[int, ...] | None:
            return None if names is None else tuple(index(name) for name in names)

        paths = tuple(
            (
                index(p.path_id),
                index(p.source),
                index(p.target),
                index(p.target_site),
                index(p.slice),
                tuple(index(name) for name in p.forward),
                route(p.reverse),
                p.sent,
                p.lost,
                p.forward_lost,
                p.reverse_lost,
                p.delay_s,
                p.baseline_delay_s,
                p.jitter_s,
                p.baseline_jitter_s,
                p.path_changed,
                p.delay_delta_s,
                route(p.previous_forward),
                route(p.previous_reverse),
            )
            for p in epoch.paths
        )
        hosts = tuple((index(h.site), h.healthy, h.reason) for h in epoch.hosts)
        return cls.model_construct(
            partition=partition,
            partitions=partitions,
            interval_ns=interval_ns,
            at_ns=epoch.at_ns,
            names=tuple(table),
            paths=paths,
            hosts=hosts,
        )

    def epoch(self) -> Epoch:
        """The partition's epoch as its analyzer built it."""
        names = self.names

        def route(indices: Sequence[int] | None) -> tuple[str, ...] | None:
            return None if indices is None else tuple(names[i] for i in indices)

        paths = tuple(
            PathEvidence(  # positional, in PathRow's order: a national epoch is ~67,000 of them
                names[row[0]],
                names[row[1]],
                names[row[2]],
                None if row[3] < 0 else names[row[3]],
                names[row[4]],
                tuple(names[i] for i in row[5]),
                route(row[6]),
                *row[7:17],
                route(row[17]),
                route(row[18]),
            )
            for row in self.paths
        )
        hosts = tuple(HostHealth(names[site], healthy, reason) for site, healthy, reason in self.hosts)
        return Epoch(paths, hosts, self.at_ns)

    def encode(self) -> bytes:
        return zlib.compress(self.model_dump_json().encode(), 1)

    @classmethod
    def decode(cls, data: bytes) -> PartitionEvidence:
        inflater = zlib.decompressobj()
        try:
            text = inflater.decompress(data, MAX_INFLATED)
        except zlib.error as exc:
            raise MalformedReport(f"evidence: not deflated ({exc})") from None
        if not inflater.eof:
            raise MalformedReport(f"evidence: truncated, or beyond {MAX_INFLATED} bytes inflated")
        return validated(cls, text, "evidence")


class EvidenceOutbox:
    """A partition's epochs until they are on the bus. Its call is the `diagnose` of the
    partition's `RootCauseRunner` (the runner's thread encodes; the engine does not run in a
    partition: analyzer.combiner_epochs runs it over every partition's evidence), and the
    partition's intake takes the encoded epochs (`take`, then `sent`) after its reports."""

    def __init__(self, partition: int, partitions: int, interval_ns: int, max_epochs: int = MAX_OUTBOX_EPOCHS) -> None:
        if not 0 <= partition < partitions:
            raise ValueError(f"partition {partition} of {partitions}")
        self.partition = partition
        self.partitions = partitions
        self.interval_ns = interval_ns  # the partition store's
        self._max = max_epochs
        self.dropped = 0  # epochs that never reached the bus because the outbox was full
        self.bytes_total = 0  # of the epochs put in the outbox, encoded
        self._waiting: deque[tuple[int, bytes]] = deque()  # (at_ns, message), oldest first
        self._lock = threading.Lock()

    def __call__(self, epoch: Epoch) -> tuple:
        """Keep `epoch` for the bus; no diagnoses here."""
        message = PartitionEvidence.of(epoch, self.partition, self.partitions, self.interval_ns).encode()
        with self._lock:
            if len(self._waiting) >= self._max:
                self._waiting.popleft()
                self.dropped += 1
            self._waiting.append((epoch.at_ns, message))
            self.bytes_total += len(message)
        return ()

    def take(self) -> tuple[int, bytes] | None:
        """The oldest epoch waiting (its end, its message), left in the outbox until `sent`."""
        with self._lock:
            return self._waiting[0] if self._waiting else None

    def sent(self, at_ns: int) -> None:
        with self._lock:
            if self._waiting and self._waiting[0][0] == at_ns:
                self._waiting.popleft()

    def __len__(self) -> int:
        with self._lock:
            return len(self._waiting)
