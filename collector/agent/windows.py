"""Per-path interval summaries: ProbeResults in, PathWindows out (docs/architecture.md, "The data that flows").

A probe belongs to the window in which it was sent, whatever time its fate settles; a
window is closed once every probe in it has had time to settle (its end plus the settle
delay: the timeout and the time loss direction may wait for a later reply). Windows are
aligned on wall-clock multiples of their length and numbered by that multiple, so all
agents' windows line up and a window's number is the same after an agent restarts.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from collector.contract.records import RTT_BUCKETS_NS, PathKey, PathWindow, ProbeResult
from collector.probes.summary import ProbeSummary, percentile

# What a window takes over from its probes' ProbeSummary: the fields both records have
# (counts, RTT percentiles, delay variation), which mean the same in both.
_FROM_SUMMARY = tuple(name for name in PathWindow.__dataclass_fields__ if name in ProbeSummary.__dataclass_fields__)


class WindowBuilder:
    """Collects one path's results into windows and hands out the ones that are settled."""

    def __init__(self, key: PathKey, target_address: str, window_ns: int, settle_ns: int, slice_dscp: int) -> None:
        self.key = key
        self.target_address = target_address
        self.window_ns = window_ns
        self.settle_ns = settle_ns
        self.slice_dscp = slice_dscp
        self.fingerprint: str | None = None
        self._open: dict[int, list[ProbeResult]] = {}  # window number -> results

    def add(self, result: ProbeResult) -> None:
        self._open.setdefault(result.sent_ns // self.window_ns, []).append(result)

    def add_all(self, results: Iterable[ProbeResult]) -> None:
        for result in results:
            self.add(result)

    def close_ready(self, now_ns: int) -> list[PathWindow]:
        """Windows whose end plus the settle delay has passed, oldest first."""
        ready = sorted(n for n in self._open if (n + 1) * self.window_ns + self.settle_ns <= now_ns)
        return [self._summarise(n, self._open.pop(n)) for n in ready]

    def close_all(self) -> list[PathWindow]:
        """Everything still open (at shutdown, after the sessions were flushed)."""
        return [self._summarise(n, self._open.pop(n)) for n in sorted(self._open)]

    def _summarise(self, number: int, results: list[ProbeResult]) -> PathWindow:
        return summarise(
            self.key, self.target_address, number, self.window_ns, results, self.slice_dscp, self.fingerprint
        )


def summarise(
    key: PathKey,
    target_address: str,
    number: int,
    window_ns: int,
    results: list[ProbeResult],
    slice_dscp: int,
    fingerprint: str | None,
) -> PathWindow:
    """One window from its results (in arrival order, which reordering counts need)."""
    summary = ProbeSummary.from_results(results)
    answered = [r for r in results if not r.lost and not r.duplicate]
    buckets = [0] * (len(RTT_BUCKETS_NS) + 1)
    for r in answered:
        assert r.rtt_ns is not None  # answered: not lost
        buckets[bisect.bisect_left(RTT_BUCKETS_NS, r.rtt_ns)] += 1  # a bound is inclusive (le)
    forward = sorted(r.forward_owd_ns for r in answered if r.forward_owd_ns is not None)
    reverse = sorted(r.reverse_owd_ns for r in answered if r.reverse_owd_ns is not None)
    clock_errors = [r.clock_error_ns for r in answered if r.clock_error_ns is not None]
    remarked = sum(
        1
        for r in answered
        if (r.reflector_dscp is not None and r.reflector_dscp != slice_dscp)
        or (r.reply_dscp is not None and r.reply_dscp != slice_dscp)
    )
    latest = max(answered, key=lambda r: r.sent_ns, default=None)
    return PathWindow(
        **{name: getattr(summary, name) for name in _FROM_SUMMARY},
        key=key,
        target_address=target_address,
        seq=number,
        start_ns=number * window_ns,
        end_ns=(number + 1) * window_ns,
        rtt_buckets=tuple(buckets),
        rtt_sum_ns=sum(r.rtt_ns for r in answered),  # type: ignore[misc]
        forward_owd_p50_ns=percentile(forward, 0.5),
        reverse_owd_p50_ns=percentile(reverse, 0.5),
        forward_owd_p99_ns=percentile(forward, 0.99),
        reverse_owd_p99_ns=percentile(reverse, 0.99),
        clock_error_ns=max(clock_errors) if clock_errors else None,
        dscp_remarked=remarked,
        reflector_hop_limit=latest.reflector_hop_limit if latest else None,
        reply_hop_limit=latest.reply_hop_limit if latest else None,
        path_fingerprint=fingerprint,
        icmp_errors=sum(1 for r in results if r.icmp_error),
    )
