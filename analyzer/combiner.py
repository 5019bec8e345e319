"""The combiner of a partitioned analysis: the partitions' partial sums of each slice
interval (analyzer.partials) added into one `IntervalStats` that feeds the slice's tracker
in a store of its own (`WindowStore.add_slice_interval`), so that store's slice verdicts,
/slices and /metrics are those of a single analyzer over every path.

An interval of a slice closes, in order, once every partition's watermark for the slice has
passed it (each has sent all it will), or `grace_s` after the combiner first heard of it
(a partition down or slow then counts as no data for its paths, as a silent site does in
one analyzer). The grace runs on the combiner's clock from arrival, not from the interval's
end: a combiner replaying the stream after a restart must not close an interval before the
stream's later reports have come. A partial for an interval already closed is late: dropped
and counted. At most `MAX_OPEN_INTERVALS` intervals a slice wait; beyond, the oldest closes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from analyzer.partials import PartitionReport
from analyzer.sla.series import IntervalStats
from analyzer.store.memory import MAX_OPEN_INTERVALS, WindowStore

GRACE_S = 15.0  # how long an interval waits for a partition that has not passed it


@dataclass(slots=True)
class _Waiting:
    first_heard_ns: int
    first_seq: int  # the stream sequence of the oldest report holding a part (0: not from a stream)
    parts: dict[int, IntervalStats] = field(default_factory=dict)  # partition -> its sums


class PartialsCombiner:
    """Merges `partitions` partitions' reports into `store` (its slices' trackers only)."""

    def __init__(self, store: WindowStore, partitions: int, grace_s: float = GRACE_S) -> None:
        self.store = store
        self.partitions = partitions
        self.grace_ns = round(grace_s * 1e9)
        self.reports_total = 0
        self.reports_refused = 0  # of another partition count or interval length, or an unknown slice
        self.partials_late = 0  # for an interval already closed
        self.intervals_combined = 0
        self.intervals_by_grace = 0  # closed without every partition's watermark past them
        self._marks: list[dict[str, int]] = [{} for _ in range(partitions)]  # per partition: slice -> closed through
        self._waiting: dict[str, dict[int, _Waiting]] = {}  # slice -> interval number -> its parts
        self._closed: dict[str, int] = {}  # slice -> the newest interval number closed here

    def add(self, report: PartitionReport, now_ns: int, seq: int = 0) -> bool:
        """Take one report (`seq`: its stream sequence, for `oldest_waiting_seq`); False (and
        counted) when it does not belong to this analysis."""
        self.reports_total += 1
        if report.partitions != self.partitions or report.interval_ns != self.store.interval_ns:
            self.reports_refused += 1
            return False
        policies = self.store.policies
        for item in report.intervals:
            if item.slice not in policies:
                continue  # the partition took it under a policy this combiner lacks: nothing to judge
            number = item.stats.start_ns // report.interval_ns
            if number <= self._closed.get(item.slice, -1):
                self.partials_late += 1
                continue
            waiting = self._waiting.setdefault(item.slice, {})
            interval = waiting.get(number)
            if interval is None:
                interval = waiting[number] = _Waiting(now_ns, seq)
            interval.parts[report.partition] = item.stats.stats()
        marks = self._marks[report.partition]
        for name, through in report.closed_through.items():
            if name in policies and through > marks.get(name, -1):
                marks[name] = through
        self.advance(now_ns)
        return True

    def advance(self, now_ns: int) -> None:
        """Close what is complete or past its grace, every slice in interval order."""
        for name, waiting in self._waiting.items():
            while waiting:
                number = min(waiting)
                interval = waiting[number]
                complete = all(marks.get(name, -1) >= number for marks in self._marks)
                if not complete:
                    if now_ns - interval.first_heard_ns < self.grace_ns and len(waiting) <= MAX_OPEN_INTERVALS:
                        break
                    self.intervals_by_grace += 1
                del waiting[number]
                self._closed[name] = number
                if self.store.add_slice_interval(name, IntervalStats.merged(interval.parts.values())):
                    self.intervals_combined += 1

    def oldest_waiting_seq(self) -> int | None:
        """The stream sequence of the oldest report a waiting interval holds a part of: a
        checkpoint of the store covers the stream only up to before it."""
        seqs = [w.first_seq for waiting in self._waiting.values() for w in waiting.values()]
        return min(seqs) if seqs else None

    def waiting(self) -> int:
        """Slice intervals waiting for a partition."""
        return sum(len(w) for w in self._waiting.values())
