"""ProbeSummary: loss counts, percentiles, IPDV (RFC 3393), PDV (RFC 5481), reordering."""

from __future__ import annotations

from collector.contract.records import LossDirection, ProbeResult
from collector.probes.summary import ProbeSummary, percentile


def ok(seq: int, rtt_us: int) -> ProbeResult:
    return ProbeResult("t", "s", seq, 0, rtt_us * 1000)


def lost(seq: int, direction: LossDirection) -> ProbeResult:
    return ProbeResult("t", "s", seq, 0, None, direction)


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.99) == 99
    assert percentile(values, 1.0) == 100
    assert percentile([7], 0.99) == 7
    assert percentile([], 0.5) is None


def test_loss_counts_by_direction_and_ratio():
    s = ProbeSummary.from_results(
        [
            ok(0, 100),
            lost(1, LossDirection.FORWARD),
            lost(2, LossDirection.REVERSE),
            lost(3, LossDirection.UNKNOWN),
            ok(4, 100),
        ]
    )
    assert (s.sent, s.received, s.lost_forward, s.lost_reverse, s.lost_unknown) == (5, 2, 1, 1, 1)
    assert s.loss_ratio == 0.6


def test_ipdv_uses_consecutive_sequence_numbers_only():
    # 0 -> 1 differ by 50 us; 3 follows a gap so 1 -> 3 is not a consecutive pair.
    s = ProbeSummary.from_results([ok(0, 100), ok(1, 150), lost(2, LossDirection.UNKNOWN), ok(3, 400)])
    assert s.ipdv_mean_abs_ns == 50_000 and s.ipdv_max_abs_ns == 50_000


def test_pdv_is_delay_above_the_minimum_and_rtt_statistics():
    s = ProbeSummary.from_results([ok(i, 100 + i) for i in range(100)])
    assert s.rtt_min_ns == 100_000 and s.rtt_max_ns == 199_000
    assert s.rtt_p50_ns == 149_000 and s.rtt_p99_ns == 198_000
    assert s.pdv_p99_ns == 98_000


def test_duplicates_and_reordering_are_counted_separately():
    dup = ProbeResult("t", "s", 1, 0, 1000, duplicate=True)
    s = ProbeSummary.from_results([ok(0, 1), ok(2, 1), ok(1, 1), dup])
    assert s.duplicates == 1 and s.reordered == 1 and s.received == 3


def test_empty_run_has_no_statistics():
    s = ProbeSummary.from_results([])
    assert s.sent == 0 and s.rtt_p50_ns is None and s.loss_ratio == 0.0
