"""An interval's windows added together: counts and histograms sum, jitter and one-way delay
keep the worst path's value, and paths past the unavailability level are counted."""

from __future__ import annotations

from dataclasses import replace

import pytest

from analyzer.sla.series import IntervalStats
from collector.contract.records import RTT_BUCKETS_NS
from tests.analyzer_support import T0, W, window

MS = 1_000_000


def test_counts_and_histograms_add_up_across_paths():
    stats = IntervalStats.of(
        [window(T0, sent=10, lost=1, rtt_bucket=3), window(T0, target="edge", sent=20, lost=0, rtt_bucket=5)]
    )
    assert (stats.start_ns, stats.end_ns, stats.paths) == (T0 * W, (T0 + 1) * W, 2)
    assert (stats.sent, stats.received, stats.lost, stats.loss_ratio) == (30, 29, 1, pytest.approx(1 / 30))
    assert stats.rtt_buckets[3] == 9 and stats.rtt_buckets[5] == 20 and sum(stats.rtt_buckets) == 29
    assert len(stats.rtt_buckets) == len(RTT_BUCKETS_NS) + 1


def test_values_that_do_not_add_up_keep_the_worst_path_and_ignore_the_missing():
    quiet = replace(window(T0, sent=200), forward_owd_p99_ns=None, clock_error_ns=None)
    jittery = replace(
        window(T0, target="edge", sent=200),
        ipdv_mean_abs_ns=7 * MS,
        pdv_p99_ns=9 * MS,
        forward_owd_p99_ns=3 * MS,
        clock_error_ns=MS // 10,
    )
    stats = IntervalStats.of([quiet, jittery])
    assert (stats.worst_ipdv_mean_abs_ns, stats.worst_pdv_p99_ns) == (7 * MS, 9 * MS)
    assert (stats.worst_forward_owd_p99_ns, stats.worst_reverse_owd_p99_ns) == (3 * MS, None)
    assert stats.worst_clock_error_ns == MS // 10


def test_a_p99_of_too_few_replies_is_no_p99():
    # Ten replies: their p99 is their maximum, one late reply of a busy host.
    few = replace(window(T0, sent=10), pdv_p99_ns=40 * MS, forward_owd_p99_ns=40 * MS, reverse_owd_p99_ns=40 * MS)
    many = replace(window(T0, target="edge", sent=200), pdv_p99_ns=2 * MS)
    stats = IntervalStats.of([few, many])
    assert stats.worst_pdv_p99_ns == 2 * MS
    assert (stats.worst_forward_owd_p99_ns, stats.worst_reverse_owd_p99_ns) == (None, None)


def test_a_path_is_unavailable_only_above_the_loss_level_and_only_when_it_sent():
    windows = [window(T0, sent=4, lost=3), window(T0, target="b", sent=4, lost=4), window(T0, target="c", sent=0)]
    assert IntervalStats.of(windows).unavailable_paths == 1  # 75% is not above 0.75; nothing sent is not down
    assert IntervalStats.of(windows, unavailable_loss=0.5).unavailable_paths == 2


def test_fraction_within_reads_the_buckets_at_or_below_a_bound():
    stats = IntervalStats.of([window(T0, sent=10, rtt_bucket=2), window(T0, target="b", sent=30, rtt_bucket=6)])
    assert stats.fraction_within(RTT_BUCKETS_NS[2]) == 0.25
    assert stats.fraction_within(RTT_BUCKETS_NS[1]) == 0.0
    assert stats.fraction_within(RTT_BUCKETS_NS[6]) == 1.0
    with pytest.raises(ValueError):
        stats.fraction_within(RTT_BUCKETS_NS[2] + 1)  # not a bucket bound: no estimate


def test_without_replies_there_is_no_fraction_and_without_windows_no_interval():
    assert IntervalStats.of([window(T0, sent=5, lost=5)]).fraction_within(RTT_BUCKETS_NS[0]) is None
    with pytest.raises(ValueError, match="at least one window"):
        IntervalStats.of([])


def test_stats_merged_from_disjoint_parts_equal_the_stats_of_all_windows_at_once():
    windows = [
        window(T0, target="a", lost=3, rtt_bucket=2),
        replace(window(T0, target="b", sent=200, rtt_bucket=5), pdv_p99_ns=9_000_000, clock_error_ns=40_000),
        window(T0, target="c", sent=10, lost=9),  # unavailable
        replace(window(T0, target="d", sent=300, lost=1, rtt_bucket=7), forward_owd_p99_ns=7_000_000),
    ]
    whole = IntervalStats.of(windows, 0.75)
    for cut in ([windows[:1], windows[1:]], [windows[:2], windows[2:3], windows[3:]], [windows]):
        assert IntervalStats.merged(IntervalStats.of(part, 0.75) for part in cut) == whole
    with pytest.raises(ValueError):
        IntervalStats.merged([])
