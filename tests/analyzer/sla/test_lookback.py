"""The bucketed lookback against its docstring's table and against a plain list of every
interval: counts, the far edge, gaps, the unavailable share, snapshots."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.sla.lookback import SLOTS, Lookback

S = 1_000_000_000
INTERVAL = 10 * S
MINUTE, HOUR, DAY = 60 * S, 3600 * S, 86400 * S


@pytest.mark.parametrize(
    "length, slot, slots",
    [
        (5 * MINUTE, 10 * S, 30),
        (30 * MINUTE, 30 * S, 60),
        (HOUR, 60 * S, 60),
        (6 * HOUR, 6 * MINUTE, 60),
        (3 * DAY, 72 * MINUTE, 60),
        (30 * DAY, 12 * HOUR, 60),
    ],
)
def test_bucket_geometry_is_the_docstrings_table_at_10_s(length, slot, slots):
    lookback = Lookback(length, INTERVAL)
    assert (lookback.slot_ns, lookback.slots) == (slot, slots)
    assert lookback.judged.typecode == "H"  # 16-bit counters even for 30 days
    assert lookback.nbytes() == 2 * 2 * slots


def test_counters_widen_when_a_bucket_could_hold_more_than_65535_intervals():
    lookback = Lookback(SLOTS * 70_000 * S, S)
    assert lookback.judged.typecode == lookback.bad.typecode == "I"
    lookback.add(0, judged=True, bad=False, unavailable=0.0)
    assert lookback.totals(S) == (1, 0, 0.0)


def test_an_empty_lookback_counts_nothing():
    assert Lookback(5 * MINUTE, INTERVAL).totals(10 * DAY) == (0, 0, 0.0)


def test_intervals_leave_the_lookback_one_bucket_at_a_time():
    lookback = Lookback(MINUTE, INTERVAL)  # 6 buckets of one interval each
    for n in range(6):
        lookback.add(n * INTERVAL, judged=True, bad=n < 2, unavailable=0.0)
    assert lookback.totals(6 * INTERVAL) == (6, 2, 0.0)
    assert lookback.totals(7 * INTERVAL) == (5, 1, 0.0)  # the first bad one has left
    assert lookback.totals(8 * INTERVAL) == (4, 0, 0.0)
    assert lookback.totals(12 * INTERVAL) == (0, 0, 0.0)


def test_unjudged_intervals_move_time_on_without_counting():
    lookback = Lookback(MINUTE, INTERVAL)
    lookback.add(0, judged=True, bad=True, unavailable=0.0)
    lookback.add(6 * INTERVAL, judged=False, bad=False, unavailable=0.0)
    assert lookback.totals(7 * INTERVAL) == (0, 0, 0.0)


def test_a_gap_longer_than_the_lookback_empties_it():
    lookback = Lookback(MINUTE, INTERVAL)
    for n in range(6):
        lookback.add(n * INTERVAL, judged=True, bad=True, unavailable=0.0)
    lookback.add(1000 * INTERVAL, judged=True, bad=False, unavailable=0.0)
    assert lookback.totals(1001 * INTERVAL) == (1, 0, 0.0)


def test_the_unavailable_share_is_summed_and_returns_to_exactly_zero():
    lookback = Lookback(MINUTE, INTERVAL, track_unavailable=True)
    for n, share in enumerate([0.1, 0.2, 0.3]):
        lookback.add(n * INTERVAL, judged=True, bad=False, unavailable=share)
    assert lookback.totals(3 * INTERVAL)[2] == pytest.approx(0.6)
    lookback.add(9 * INTERVAL, judged=True, bad=False, unavailable=0.0)  # 0.1, 0.2, 0.3 have left
    assert lookback.total_unavailable == 0.0
    assert Lookback(MINUTE, INTERVAL).unavailable is None  # not tracked unless asked


def test_a_snapshot_restores_the_same_counts_and_is_refused_by_another_geometry():
    lookback = Lookback(HOUR, INTERVAL, track_unavailable=True)
    for n in range(0, 500, 3):
        lookback.add(n * INTERVAL, judged=True, bad=n % 2 == 0, unavailable=0.25 if n % 5 == 0 else 0.0)
    state = lookback.to_state()
    copy = Lookback(HOUR, INTERVAL, track_unavailable=True)
    assert copy.restore(state)
    for at in (500 * INTERVAL, 600 * INTERVAL, 800 * INTERVAL):
        assert copy.totals(at) == lookback.totals(at)
    other = Lookback(2 * HOUR, INTERVAL, track_unavailable=True)
    assert not other.restore(state) and other.totals(500 * INTERVAL) == (0, 0, 0.0)
    assert not Lookback(HOUR, INTERVAL).restore(state)  # one tracks unavailability, the other not


intervals = st.lists(st.tuples(st.integers(1, 40), st.booleans(), st.booleans()), min_size=1, max_size=120)


@settings(max_examples=200, deadline=None)
@given(intervals, st.integers(0, 50))
def test_totals_equal_a_plain_count_of_the_buckets_the_lookback_covers(steps, later):
    lookback = Lookback(5 * MINUTE, S)  # 300 intervals in 60 buckets of 5
    added, start = [], 0
    for gap, judged, bad in steps:
        start += gap * S
        lookback.add(start, judged, bad, 0.0)
        added.append((start, judged, bad))
    now = start + S + later * S
    newest = (now - 1) // lookback.slot_ns
    covered = [(j, b) for t, j, b in added if newest - lookback.slots < t // lookback.slot_ns <= newest and j]
    assert lookback.totals(now)[:2] == (len(covered), sum(b for _, b in covered))


def test_a_fresh_lookback_has_the_geometry_and_none_of_the_counts():
    used = Lookback(300 * 10**9, 10 * 10**9, track_unavailable=True)
    used.add(10**12, True, 1, 0.5)
    fresh = used.fresh()
    assert fresh.to_state() == Lookback(300 * 10**9, 10 * 10**9, track_unavailable=True).to_state()
    assert used.totals(10**12 + 1) == (1, 1, 0.5)
