"""Path trackers as columns (analyzer/sla/path_trackers.py): the same verdicts and states as one
`SlaTracker` per path, interval by interval, on random windows."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer.sla.path_trackers import PathTrackers
from analyzer.sla.series import IntervalStats, window_stats
from analyzer.sla.verdicts import BurnWindow, Objective, SlaPolicy, SlaTracker, default_policies
from collector.contract.examples import example_window
from collector.contract.records import RTT_BUCKETS_NS, PathKey, PathWindow

W = 10**9  # 1 s intervals: short lookbacks wrap within a test
T0 = 1_700_000_000
BUCKETS = len(RTT_BUCKETS_NS) + 1
# Lookbacks of a few intervals to a hundred, so that bad intervals leave them and promoted
# trackers go back into their rows within a test; every objective, tight bounds.
SHORT = SlaPolicy(
    "short",
    (
        Objective("two-way-delay-percentile", 0.005, 99.0),
        Objective("one-way-delay-percentile", 0.002, 99.0),
        Objective("two-way-delay-variation-percentile", 0.002, 99.0),
        Objective("two-way-packet-loss", 0.01),
        Objective("availability", 0.99),
    ),
    compliance_window_s=100.0,
    burn_windows=(BurnWindow(30.0, 5.0, 14.4, "page"), BurnWindow(60.0, 10.0, 1.0, "ticket")),
    hysteresis_intervals=2,
)
POLICIES = [SHORT, *default_policies().values()]


@st.composite
def windows(draw, key: PathKey, seq: int) -> PathWindow:
    """One path's window: from silent to lossy, fast to slow, with and without p99s."""
    sent = draw(st.sampled_from((0, 1, 10, 10, 10, 120, 1000)))
    lost = draw(st.sampled_from((0, 0, 0, 1, 2, sent // 2, sent)))
    lost = min(lost, sent)
    received = sent - lost
    slow = draw(st.integers(0, BUCKETS - 1))
    share_slow = draw(st.sampled_from((0.0, 0.0, 0.01, 0.05, 1.0)))
    late = round(received * share_slow)
    buckets = [0] * BUCKETS
    buckets[draw(st.integers(0, 4))] += received - late
    buckets[slow] += late
    p99 = st.one_of(st.none(), st.integers(0, 6_000_000))
    forward = draw(p99)
    return example_window(
        key,
        seq,
        interval_ns=W,
        sent=sent,
        received=received,
        lost_forward=lost // 2,
        lost_reverse=lost - lost // 2 - (lost > 2),
        lost_unknown=int(lost > 2),
        rtt_buckets=tuple(buckets),
        pdv_p99_ns=draw(p99),
        forward_owd_p99_ns=forward,
        reverse_owd_p99_ns=draw(p99) if forward is not None else None,
        clock_error_ns=draw(st.sampled_from((None, 0, 500_000, 5_000_000))),
    )


@st.composite
def scenarios(draw):
    """(policy, paths, intervals): per interval, each path's window, None (missing) or a
    pair of windows (fed alone, as the store feeds several windows of a path)."""
    policy = draw(st.sampled_from(POLICIES))
    keys = [PathKey("cnty1a", f"t{i}", policy.slice, "stamp") for i in range(draw(st.integers(1, 5)))]
    intervals = []
    seq = T0
    for _ in range(draw(st.integers(1, 40))):
        seq += draw(st.sampled_from((1, 1, 1, 1, 1, 1, 2, 5)))  # now and then slots nobody filled
        row = []
        for key in keys:
            kind = draw(st.sampled_from(("one",) * 8 + ("none", "two")))
            if kind == "none":
                row.append(None)
            elif kind == "one":
                row.append(draw(windows(key, seq)))
            else:
                row.append((draw(windows(key, seq)), draw(windows(key, seq))))
        intervals.append((seq, row))
    return policy, keys, intervals


def same(tracker: SlaTracker, trackers: PathTrackers, row: int, now_ns: int) -> None:
    assert trackers.verdict(row, now_ns) == tracker.verdict(now_ns)
    assert json.dumps(trackers.tracker(row).to_state()) == json.dumps(tracker.to_state())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_columns_judge_as_one_tracker_per_path(scenario):
    policy, keys, intervals = scenario
    objects = [SlaTracker(policy, W / 1e9, key) for key in keys]
    columns = PathTrackers(policy, W / 1e9)
    rows = [columns.new(key).row for key in keys]
    for seq, fed in intervals:
        ones = [(i, w) for i, w in enumerate(fed) if isinstance(w, PathWindow)]
        for i, w in ones:
            objects[i].add(window_stats(w, policy.unavailable_loss))
        columns.add_interval([rows[i] for i, _ in ones], [w for _, w in ones])
        for i, pair in enumerate(fed):
            if isinstance(pair, tuple):
                stats = IntervalStats.of(pair, policy.unavailable_loss)
                objects[i].add(stats)
                columns.add(rows[i], stats)
        for tracker, row in zip(objects, rows):
            same(tracker, columns, row, (seq + 1) * W)
    for tracker, row in zip(objects, rows):  # read later: slots that never came
        same(tracker, columns, row, (intervals[-1][0] + 7) * W)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.integers(0, 39))
def test_a_row_restored_from_a_state_goes_on_as_the_tracker(scenario, cut):
    """A snapshot's tracker state put into a row (fresh columns, as after a restart) continues
    as the tracker it came from."""
    policy, keys, intervals = scenario
    objects = [SlaTracker(policy, W / 1e9, key) for key in keys]
    columns = PathTrackers(policy, W / 1e9)
    rows = [columns.new(key).row for key in keys]
    for n, (_, fed) in enumerate(intervals):
        if n == cut % len(intervals):
            columns = PathTrackers(policy, W / 1e9)
            rows = [columns.new(key).row for key in keys]
            for tracker, row in zip(objects, rows):
                columns.restore(row, json.loads(json.dumps(tracker.to_state())))
        ones = [(i, w) for i, w in enumerate(fed) if isinstance(w, PathWindow)]
        for i, w in ones:
            objects[i].add(window_stats(w, policy.unavailable_loss))
        columns.add_interval([rows[i] for i, _ in ones], [w for _, w in ones])
    for tracker, row in zip(objects, rows):
        same(tracker, columns, row, (intervals[-1][0] + 1) * W)


def lossy(key: PathKey, seq: int, lost: int) -> PathWindow:
    return example_window(key, seq, interval_ns=W, sent=100, received=100 - lost, lost_forward=lost)


def test_a_violating_path_is_promoted_and_comes_back_once_its_lookbacks_are_clean():
    columns = PathTrackers(SHORT, 1.0)
    key = PathKey("cnty1a", "t0", "short", "stamp")
    row = columns.new(key).row
    columns.add_interval([row], [lossy(key, T0, 0)])
    assert not columns.promoted
    columns.add_interval([row], [lossy(key, T0 + 1, 50)])  # 50% loss: bad, and unavailable
    assert row in columns.promoted
    assert columns.verdict(row, (T0 + 2) * W).error_budget_remaining < 1
    for seq in range(T0 + 2, T0 + 110):  # past the 100 s compliance window
        columns.add_interval([row], [lossy(key, seq, 0)])
    assert row not in columns.promoted
    assert columns.verdict(row, (T0 + 110) * W).error_budget_remaining == 1


def test_released_rows_are_reused_fresh_and_the_columns_grow():
    columns = PathTrackers(SHORT, 1.0)
    keys = [PathKey("cnty1a", f"t{i}", "short", "stamp") for i in range(200)]
    handles = [columns.new(key) for key in keys]
    columns.add_interval([h.row for h in handles], [lossy(k, T0, 0) for k in keys])
    assert len(columns.last_start) >= 200
    handles[5].release()
    reused = columns.new(PathKey("cnty1a", "new", "short", "stamp"))
    assert reused.row == handles[5].row
    fresh = SlaTracker(SHORT, 1.0, PathKey("cnty1a", "new", "short", "stamp"))
    assert reused.to_state() == fresh.to_state()
    assert reused.verdict(T0 * W) == fresh.verdict(T0 * W)


def test_a_state_that_does_not_fit_raises_and_leaves_the_row_fresh():
    columns = PathTrackers(SHORT, 1.0)
    handle = columns.new(PathKey("cnty1a", "t0", "short", "stamp"))
    with pytest.raises(ValueError, match="version"):
        handle.restore({"version": 0})
    assert handle.to_state() == SlaTracker(SHORT, 1.0, PathKey("cnty1a", "t0", "short", "stamp")).to_state()


@pytest.mark.parametrize(
    "damage",
    [
        lambda hysteresis: hysteresis.update(status="weird"),  # no such status: no column code
        lambda hysteresis: hysteresis.update(since_ns=2**70),  # past the column's 64 bits
    ],
    ids=["unknown status", "too large"],
)
def test_a_state_the_columns_cannot_hold_raises_and_leaves_the_row_fresh(damage):
    key = PathKey("cnty1a", "t0", "short", "stamp")
    tracker = SlaTracker(SHORT, 1.0, key)
    for seq in range(T0, T0 + 5):
        tracker.add(window_stats(lossy(key, seq, 0), SHORT.unavailable_loss))
    state = tracker.to_state()
    damage(state["hysteresis"])
    columns = PathTrackers(SHORT, 1.0)
    handle = columns.new(key)
    with pytest.raises(ValueError, match="cannot hold"):
        handle.restore(state)
    assert handle.to_state() == SlaTracker(SHORT, 1.0, key).to_state()
    assert not columns.promoted


def test_a_column_row_takes_less_memory_than_a_tracker_object():
    columns = PathTrackers(default_policies()["video"], 10.0)
    for i in range(1024):
        columns.new(PathKey("cnty1a", f"t{i}", "video", "stamp"))
    per_row = columns.nbytes() / len(columns.last_start)
    assert per_row < 1_100 < SlaTracker(default_policies()["video"], 10.0).nbytes()


@pytest.mark.parametrize(
    ("policy", "interval_s"), [(SHORT, 1.0), (default_policies()["egov"], 10.0)], ids=["short", "egov"]
)
def test_an_unresolved_pool_ends_at_its_limit_as_in_the_tracker(policy, interval_s):
    """Two probes an interval, now and then one lost: unresolved interval after interval
    until the pool reaches its limit (analyzer.sla.resolution), then a new pool starts."""
    key = PathKey("cnty1a", "t0", policy.slice, "stamp")
    tracker, columns = SlaTracker(policy, interval_s, key), PathTrackers(policy, interval_s)
    row = columns.new(key).row
    step = round(interval_s * W)
    first = T0 * W // step  # late 2023, whatever the interval
    for seq in range(first, first + 80):
        lost = int(seq % 37 == 0)
        w = example_window(key, seq, interval_ns=step, sent=2, received=2 - lost, lost_forward=lost)
        tracker.add(window_stats(w, policy.unavailable_loss))
        columns.add_interval([row], [w])
        same(tracker, columns, row, (seq + 1) * step)
    assert not columns.promoted
