"""The metrics state on its own: windows folded into per-path totals, repeats and stale paths,
health per site, reflector counters, and snapshots that never change once published."""

from __future__ import annotations

import dataclasses
import time

import pytest

from collector.contract.records import PathKey
from collector.outputs.prometheus.state import MetricsState, PathTotals, ReflectorCounters
from collector.reflector.session_reflector import ReflectorStats
from tests.analyzer_support import T0, W, health, window

KEY = window(T0).key


def test_totals_add_counts_and_keep_the_latest_gauges():
    first = window(T0, sent=10, lost=2, rtt_bucket=3)
    second = dataclasses.replace(
        window(T0 + 1, sent=20, lost=0, rtt_bucket=5),
        path_fingerprint=None,
        target_address="fd00::9",
        ipdv_mean_abs_ns=None,
    )
    totals = PathTotals.first(first).plus(second)
    assert (totals.sent, totals.received, totals.lost_forward) == (30, 28, 2)
    assert totals.rtt_buckets[3] == 8 and totals.rtt_buckets[5] == 20
    assert totals.fingerprint == first.path_fingerprint  # a window without a trace keeps the last path
    assert (totals.address, totals.ipdv_ns, totals.last_seq) == ("fd00::9", None, T0 + 1)
    assert (totals.window_ns, totals.last_end_ns) == (W, (T0 + 2) * W)


def test_a_repeated_or_older_window_leaves_the_totals_alone():
    state = MetricsState()
    state.apply([window(T0 + 1), window(T0 + 1), window(T0)])
    assert state.snapshot.paths[KEY].sent == 10
    assert state.snapshot.last_window_end_ns == {"cnty1a": (T0 + 2) * W}


def test_a_quiet_path_leaves_after_its_own_windows_and_returns_from_zero():
    state = MetricsState(stale_after_windows=2)
    quiet = window(T0, target="quiet")
    state.apply([window(T0), quiet])
    state.apply([window(T0 + 2)])  # two windows after the quiet path's last end: still kept
    assert set(state.snapshot.paths) == {KEY, quiet.key}
    state.apply([window(T0 + 3)])
    assert set(state.snapshot.paths) == {KEY}
    state.apply([window(T0 + 4, target="quiet")])
    assert state.snapshot.paths[quiet.key].sent == 10


def test_windows_closed_late_keep_every_path():
    """Under load an interval closes seconds late, every path's window at once: the paths are
    as current as the schedule allows, and none may leave /metrics for it. These windows
    ended years before the wall clock's now, the extreme of a late close; judged against the
    clock, a close more than three windows late dropped every path."""
    state = MetricsState(stale_after_windows=3)
    targets = ("t0", "t1", "t2")
    assert time.time_ns() - (T0 + 1) * W > 3 * W
    for seq in range(T0, T0 + 4):
        state.apply([window(seq, target=target) for target in targets])
        assert {key.target for key in state.snapshot.paths} == set(targets)
    assert all(t.sent == 40 for t in state.snapshot.paths.values())


def test_windows_with_the_wrong_bucket_count_are_refused():
    with pytest.raises(ValueError, match="RTT buckets"):
        MetricsState().apply([dataclasses.replace(window(T0), rtt_buckets=(1, 2, 3))])
    with pytest.raises(ValueError, match="stale_after_windows"):
        MetricsState(stale_after_windows=0)


def test_health_is_kept_per_site_and_the_latest_wins():
    state = MetricsState()
    state.set_health(health("a", spool_depth=1))
    state.set_health(health("b"))
    state.set_health(health("a", spool_depth=7))
    assert {site: h.spool_depth for site, h in state.snapshot.health.items()} == {"a": 7, "b": 0}


def test_reflector_counters_are_a_sorted_copy():
    stats = ReflectorStats(received=5, reflected=4, refused_not_allowed=1)
    stats.malformed["short"] += 2
    stats.malformed["bad-hmac"] += 1
    counters = ReflectorCounters.of(stats)
    stats.malformed["zzz"] += 1
    assert counters == ReflectorCounters(reflected=4, refused_not_allowed=1, malformed=(("bad-hmac", 1), ("short", 2)))


def test_a_published_snapshot_never_changes():
    state = MetricsState()
    state.apply([window(T0)])
    before = state.snapshot
    state.apply([window(T0 + 1, target="other")])
    state.set_health(health())
    state.set_reflector(ReflectorCounters(reflected=1))
    assert set(before.paths) == {KEY} and not before.health and before.reflector is None
    assert PathKey("cnty1a", "other", "video", "stamp") in state.snapshot.paths
    with pytest.raises(TypeError):
        before.paths[KEY] = None
