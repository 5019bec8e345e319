"""Statistics over a run of ProbeResults: what `probe` commands print at the end.

Definitions: loss counts per RFC 7680 (a reply after the timeout is lost); round trip per
RFC 2681; IPDV per RFC 3393 between consecutive sequence numbers that both came back;
PDV per RFC 5481 as the delay above the minimum; reordering per RFC 4737 (a reply whose
sequence number is below one already received).
"""

from __future__ import annotations

import math
from array import array
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
        tally = SummaryTally()
        for result in results:
            tally.add(result)
        return tally.summary()


class SummaryTally:
    """A ProbeSummary folded one result at a time: counts, and the (seq, RTT) of each answer
    in one compact array, what the percentiles and IPDV need, not the results themselves.

    Each probe settles once; a later reply to it comes flagged `duplicate` (the probers'
    sessions keep that promise), so an answer's sequence number is not seen twice.
    """

    __slots__ = ("duplicates", "lost_forward", "lost_reverse", "lost_unknown", "reordered", "_highest_seq", "_answers")

    def __init__(self) -> None:
        self.duplicates = self.lost_forward = self.lost_reverse = self.lost_unknown = self.reordered = 0
        self._highest_seq = -1
        self._answers = array("q")  # seq, RTT, seq, RTT, ... in arrival order

    @property
    def received(self) -> int:
        return len(self._answers) >> 1

    @property
    def sent(self) -> int:
        return self.received + self.lost_forward + self.lost_reverse + self.lost_unknown

    def add(self, result: ProbeResult) -> None:
        if result.duplicate:
            self.duplicates += 1
        elif result.rtt_ns is None:
            loss = result.loss
            if loss is LossDirection.FORWARD:
                self.lost_forward += 1
            elif loss is LossDirection.REVERSE:
                self.lost_reverse += 1
            else:
                self.lost_unknown += 1
        else:
            seq = result.seq
            if seq < self._highest_seq:
                self.reordered += 1
            else:
                self._highest_seq = seq
            self._answers.append(seq)
            self._answers.append(result.rtt_ns)

    def sorted_rtts(self) -> list[int]:
        return sorted(self._answers[1::2])

    def summary(self) -> ProbeSummary:
        return ProbeSummary(**self.statistics(self.sorted_rtts()))  # type: ignore[arg-type]

    def statistics(self, rtts: list[int]) -> dict[str, int | None]:
        """Every ProbeSummary field by name, from this tally and its sorted_rtts()."""
        answers = self._answers
        pairs = zip(answers[::2], answers[1::2])
        by_seq = sorted(pairs) if self.reordered else list(pairs)  # no reordering: in seq order
        ipdv = [abs(b[1] - a[1]) for a, b in zip(by_seq, by_seq[1:]) if b[0] == a[0] + 1]
        count = len(rtts)
        if count:
            rtt_min, rtt_p99 = rtts[0], percentile(rtts, 0.99)
            assert rtt_p99 is not None  # not empty
            delays: dict[str, int | None] = {
                "rtt_min_ns": rtt_min,
                "rtt_avg_ns": sum(rtts) // count,
                "rtt_p50_ns": percentile(rtts, 0.50),
                "rtt_p90_ns": percentile(rtts, 0.90),
                "rtt_p99_ns": rtt_p99,
                "rtt_max_ns": rtts[-1],
                # the p99 of (RTT - min) is the p99 RTT less the min: subtracting keeps the order
                "pdv_p99_ns": rtt_p99 - rtt_min,
            }
        else:
            delays = dict.fromkeys(_DELAYS)
        return {
            "sent": self.sent,
            "received": count,
            "duplicates": self.duplicates,
            "lost_forward": self.lost_forward,
            "lost_reverse": self.lost_reverse,
            "lost_unknown": self.lost_unknown,
            "reordered": self.reordered,
            "ipdv_mean_abs_ns": sum(ipdv) // len(ipdv) if ipdv else None,
            "ipdv_max_abs_ns": max(ipdv) if ipdv else None,
            **delays,
        }


_DELAYS = ("rtt_min_ns", "rtt_avg_ns", "rtt_p50_ns", "rtt_p90_ns", "rtt_p99_ns", "rtt_max_ns", "pdv_p99_ns")
