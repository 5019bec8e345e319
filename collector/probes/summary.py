"""Statistics over a run of ProbeResults: what `probe` commands print at the end.

Definitions: loss counts per RFC 7680 (a reply after the timeout is lost); round trip per
RFC 2681; IPDV per RFC 3393 between consecutive sequence numbers that both came back;
PDV per RFC 5481 as the delay above the minimum; reordering per RFC 4737 (a reply whose
sequence number is below one already received).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from collector.contract.records import LossCounts, LossDirection, ProbeResult


def percentile(sorted_values: list[int], fraction: float) -> int | None:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return None
    # round() first so that 0.99 * 100 is rank 99, not 100 through float error.
    rank = max(1, math.ceil(round(fraction * len(sorted_values), 9)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass(frozen=True, slots=True)
class ProbeSummary(LossCounts):
    sent: int
    received: int
    duplicates: int
    lost_forward: int
    lost_reverse: int
    lost_unknown: int
    reordered: int
    rtt_min_ns: int | None
    rtt_avg_ns: int | None
    rtt_p50_ns: int | None
    rtt_p90_ns: int | None
    rtt_p99_ns: int | None
    rtt_max_ns: int | None
    ipdv_mean_abs_ns: int | None  # the "jitter" engineers ask for
    ipdv_max_abs_ns: int | None
    pdv_p99_ns: int | None  # p99 delay above the minimum

    @classmethod
    def from_results(cls, results: Iterable[ProbeResult]) -> ProbeSummary:
        firsts: dict[int, ProbeResult] = {}
        duplicates = reordered = 0
        lost = {LossDirection.FORWARD: 0, LossDirection.REVERSE: 0, LossDirection.UNKNOWN: 0}
        highest_seq = -1
        for result in results:
            if result.duplicate:
                duplicates += 1
                continue
            if result.lost:
                lost[result.loss] += 1
                firsts.setdefault(result.seq, result)
                continue
            firsts[result.seq] = result
            if result.seq < highest_seq:
                reordered += 1
            highest_seq = max(highest_seq, result.seq)
        received = [r for r in firsts.values() if not r.lost]
        rtts = sorted(r.rtt_ns for r in received if r.rtt_ns is not None)
        by_seq = sorted(received, key=lambda r: r.seq)
        ipdv = [
            abs(b.rtt_ns - a.rtt_ns)  # type: ignore[operator]
            for a, b in zip(by_seq, by_seq[1:])
            if b.seq == a.seq + 1
        ]
        rtt_min = rtts[0] if rtts else None
        pdv = [v - rtts[0] for v in rtts] if rtts else []
        return cls(
            sent=len(firsts),
            received=len(received),
            duplicates=duplicates,
            lost_forward=lost[LossDirection.FORWARD],
            lost_reverse=lost[LossDirection.REVERSE],
            lost_unknown=lost[LossDirection.UNKNOWN],
            reordered=reordered,
            rtt_min_ns=rtt_min,
            rtt_avg_ns=sum(rtts) // len(rtts) if rtts else None,
            rtt_p50_ns=percentile(rtts, 0.50),
            rtt_p90_ns=percentile(rtts, 0.90),
            rtt_p99_ns=percentile(rtts, 0.99),
            rtt_max_ns=rtts[-1] if rtts else None,
            ipdv_mean_abs_ns=sum(ipdv) // len(ipdv) if ipdv else None,
            ipdv_max_abs_ns=max(ipdv) if ipdv else None,
            pdv_p99_ns=percentile(pdv, 0.99),
        )
