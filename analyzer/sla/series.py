"""What the analyzer keeps per interval: a slice's (or one path's) windows added together.

`IntervalStats` is the contract between the store (which builds them as windows arrive)
and the SLA evaluation (which reads them). Everything in it adds up across paths exactly:
counts, and RTT histograms on the fixed buckets of `collector.contract.records.RTT_BUCKETS_S`, whose
bounds include every SLA delay bound, so "p99 <= bound" is read exactly as "at least 99% of
replies fell in buckets at or below the bound". Values that do not add up (jitter,
one-way delay percentiles) are kept as the worst path's value, which is what an SLA on
the slice must answer for; a window's 99th percentiles count only when it has
`MIN_P99_REPLIES` replies (the p99 of ten replies is their maximum: one late reply of a
busy host, not a percentile).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from operator import attrgetter

from collector.contract.fast_records import builder
from collector.contract.records import RTT_BUCKETS_NS, LossCounts, PathWindow

MIN_P99_REPLIES = 100


def resolved_p99(value: int | None, received: int) -> int | None:
    """A window's p99 (delay variation, one-way delay), or None when too few replies make it."""
    return value if received >= MIN_P99_REPLIES else None


_START, _END = attrgetter("start_ns"), attrgetter("end_ns")
_SENT, _RECEIVED = attrgetter("sent"), attrgetter("received")
_LOST_FORWARD, _LOST_REVERSE = attrgetter("lost_forward"), attrgetter("lost_reverse")
_LOST_UNKNOWN = attrgetter("lost_unknown")
_IPDV, _PDV_P99, _CLOCK_ERROR = attrgetter("ipdv_mean_abs_ns"), attrgetter("pdv_p99_ns"), attrgetter("clock_error_ns")
_FORWARD_OWD_P99, _REVERSE_OWD_P99 = attrgetter("forward_owd_p99_ns"), attrgetter("reverse_owd_p99_ns")


def _max(values: Iterable[int | None]) -> int | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


@dataclass(frozen=True, slots=True)
class IntervalStats(LossCounts):
    """One interval [start_ns, end_ns) of one slice or path, summed over its windows."""

    start_ns: int
    end_ns: int
    paths: int  # windows that were added (one per path that reported)
    sent: int
    received: int
    lost_forward: int
    lost_reverse: int
    lost_unknown: int
    rtt_buckets: tuple[int, ...]  # per RTT_BUCKETS_NS bound, not cumulative; last is +Inf
    worst_ipdv_mean_abs_ns: int | None
    worst_pdv_p99_ns: int | None
    worst_forward_owd_p99_ns: int | None
    worst_reverse_owd_p99_ns: int | None
    worst_clock_error_ns: int | None
    unavailable_paths: int  # paths whose loss this interval exceeded the unavailability level

    def fraction_within(self, bound_ns: int) -> float | None:
        """Share of replies with RTT <= bound (a bucket bound); None without replies."""
        total = sum(self.rtt_buckets)
        if total == 0:
            return None
        index = RTT_BUCKETS_NS.index(bound_ns)  # ValueError: not a bucket bound
        return sum(self.rtt_buckets[: index + 1]) / total

    @classmethod
    def of(cls, windows: Iterable[PathWindow], unavailable_loss: float = 0.75) -> IntervalStats:
        """Sum windows of one interval. A path is unavailable in the interval when its loss
        ratio exceeds `unavailable_loss` (ITU-T Y.1540 / RFC 7680 practice)."""
        windows = list(windows)
        if not windows:
            raise ValueError("an interval needs at least one window")
        # Sums by map and zip rather than loops of attribute reads: a slice interval sums
        # every path's window, once per window in the store.
        buckets = list(map(sum, zip(*(w.rtt_buckets for w in windows), strict=True)))
        buckets += [0] * (len(RTT_BUCKETS_NS) + 1 - len(buckets))
        resolved = [w for w in windows if w.received >= MIN_P99_REPLIES]  # resolved_p99
        return cls(
            start_ns=min(map(_START, windows)),
            end_ns=max(map(_END, windows)),
            paths=len(windows),
            sent=sum(map(_SENT, windows)),
            received=sum(map(_RECEIVED, windows)),
            lost_forward=sum(map(_LOST_FORWARD, windows)),
            lost_reverse=sum(map(_LOST_REVERSE, windows)),
            lost_unknown=sum(map(_LOST_UNKNOWN, windows)),
            rtt_buckets=tuple(buckets),
            worst_ipdv_mean_abs_ns=_max(map(_IPDV, windows)),
            worst_pdv_p99_ns=_max(map(_PDV_P99, resolved)),
            worst_forward_owd_p99_ns=_max(map(_FORWARD_OWD_P99, resolved)),
            worst_reverse_owd_p99_ns=_max(map(_REVERSE_OWD_P99, resolved)),
            worst_clock_error_ns=_max(map(_CLOCK_ERROR, windows)),
            unavailable_paths=sum(1 for w in windows if w.sent and w.loss_ratio > unavailable_loss),
        )

    @classmethod
    def merged(cls, parts: Iterable[IntervalStats]) -> IntervalStats:
        """One interval's stats from stats of disjoint sets of its windows (the partitions of
        a partitioned analysis): equal to `of` over all the windows at once, as every field
        is a sum, a bound of the interval or a worst value."""
        parts = list(parts)
        if not parts:
            raise ValueError("an interval needs at least one part")
        if len(parts) == 1:
            return parts[0]
        return cls(
            start_ns=min(p.start_ns for p in parts),
            end_ns=max(p.end_ns for p in parts),
            paths=sum(p.paths for p in parts),
            sent=sum(p.sent for p in parts),
            received=sum(p.received for p in parts),
            lost_forward=sum(p.lost_forward for p in parts),
            lost_reverse=sum(p.lost_reverse for p in parts),
            lost_unknown=sum(p.lost_unknown for p in parts),
            rtt_buckets=tuple(map(sum, zip(*(p.rtt_buckets for p in parts), strict=True))),
            worst_ipdv_mean_abs_ns=_max(p.worst_ipdv_mean_abs_ns for p in parts),
            worst_pdv_p99_ns=_max(p.worst_pdv_p99_ns for p in parts),
            worst_forward_owd_p99_ns=_max(p.worst_forward_owd_p99_ns for p in parts),
            worst_reverse_owd_p99_ns=_max(p.worst_reverse_owd_p99_ns for p in parts),
            worst_clock_error_ns=_max(p.worst_clock_error_ns for p in parts),
            unavailable_paths=sum(p.unavailable_paths for p in parts),
        )


_build_stats = builder(IntervalStats)


def window_stats(w: PathWindow, unavailable_loss: float = 0.75) -> IntervalStats:
    """`IntervalStats.of([w], unavailable_loss)` in a fifth of the time: one per path per
    interval is the store's hottest call (tests check both give equal results, so the p99s
    and the loss ratio are spelled out here rather than called)."""
    sent, received = w.sent, w.received
    p99s_count = received >= MIN_P99_REPLIES  # resolved_p99
    return _build_stats(
        {
            "start_ns": w.start_ns,
            "end_ns": w.end_ns,
            "paths": 1,
            "sent": sent,
            "received": received,
            "lost_forward": w.lost_forward,
            "lost_reverse": w.lost_reverse,
            "lost_unknown": w.lost_unknown,
            "rtt_buckets": w.rtt_buckets,
            "worst_ipdv_mean_abs_ns": w.ipdv_mean_abs_ns,
            "worst_pdv_p99_ns": w.pdv_p99_ns if p99s_count else None,
            "worst_forward_owd_p99_ns": w.forward_owd_p99_ns if p99s_count else None,
            "worst_reverse_owd_p99_ns": w.reverse_owd_p99_ns if p99s_count else None,
            "worst_clock_error_ns": w.clock_error_ns,
            "unavailable_paths": 1
            if sent and (w.lost_forward + w.lost_reverse + w.lost_unknown) / sent > unavailable_loss
            else 0,
        }
    )
