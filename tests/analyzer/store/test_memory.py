"""WindowStore: deduplication, interval closing, verdict routing, bounds, one window's sums."""

from __future__ import annotations

import json
import random
import sys
import tracemalloc

from hypothesis import given
from hypothesis import strategies as st

from analyzer.sla.series import IntervalStats
from analyzer.sla.verdicts import SlaTracker, default_policies
from analyzer.store.memory import DEDUP_HORIZON, MAX_OPEN_INTERVALS, WindowStore, window_stats
from analyzer.store.snapshot import snapshot_text
from collector.contract.codec import record_dict
from collector.contract.records import RTT_BUCKETS_NS, PathKey, PathWindow
from tests.analyzer_support import (
    T0,
    Policy,
    RecordingTracker,
    W,
    batch,
    health,
    observation,
    recording_store,
    settled,
    slice_tracker,
    window,
)

VIDEO = PathKey("cnty1a", "core", "video", "stamp")


def path_tracker(store: WindowStore, key: PathKey) -> RecordingTracker:
    return store._paths[key].tracker


# -- deduplication -----------------------------------------------------------------------


def test_a_batch_sent_twice_is_counted_once():
    store = recording_store()
    sent = batch(window(T0), window(T0, target="edge"))
    first = store.ingest(sent, settled(T0))
    again = store.ingest(sent, settled(T0))
    assert (first.accepted, first.duplicates) == (2, 0)
    assert (again.accepted, again.duplicates) == (0, 2)
    assert store.stats()["windows_ingested"] == 2 and store.stats()["windows_duplicate"] == 2


def test_windows_a_little_out_of_order_are_taken_once_each():
    store = recording_store(catch_up_s=3600)  # nothing closes by time: only dedup is seen
    for seq in (T0 + 5, T0 + 3, T0 + 4, T0 + 3, T0 + 5, T0 + 6, T0 + 4):
        store.ingest(batch(window(seq)), settled(T0 + 6))
    stats = store.stats()
    assert (stats["windows_ingested"], stats["windows_duplicate"]) == (4, 3)


def test_windows_older_than_the_dedup_horizon_are_dropped_as_stale():
    store = recording_store()
    store.ingest(batch(window(T0 + DEDUP_HORIZON)), settled(T0 + DEDUP_HORIZON))
    result = store.ingest(batch(window(T0), window(T0 + 1)), settled(T0 + DEDUP_HORIZON))
    assert (result.accepted, result.stale) == (1, 1)  # T0 + 1 is still within the 64 remembered


def test_paths_are_deduplicated_separately():
    store = recording_store()
    result = store.ingest(batch(window(T0), window(T0, source="cnty2b"), window(T0, kind="icmp")), settled(T0))
    assert result.accepted == 3


# -- closing intervals -------------------------------------------------------------------


def test_an_interval_closes_once_every_path_of_the_previous_one_reported():
    store = recording_store(catch_up_s=3600)
    paths = ("core", "edge", "far")
    store.ingest(batch(*(window(T0, target=t) for t in paths)), settled(T0))
    tracker = slice_tracker(store, "video")
    assert tracker.added == []  # the very first interval waits until its paths moved on
    store.ingest(batch(*(window(T0 + 1, target=t) for t in paths)), settled(T0 + 1))
    assert [s.paths for s in tracker.added] == [3, 3]  # T0, then T0+1: its paths are T0's
    store.ingest(batch(window(T0 + 2, target="core"), window(T0 + 2, target="edge")), settled(T0 + 2))
    assert len(tracker.added) == 2  # T0+2 waits for "far"
    store.ingest(batch(window(T0 + 2, target="far")), settled(T0 + 2))
    assert [s.paths for s in tracker.added] == [3, 3, 3]


def test_an_interval_missing_a_path_closes_after_the_grace():
    store = recording_store(grace_intervals=1.5)
    store.ingest(batch(window(T0, target="core"), window(T0, target="edge")), settled(T0))
    store.ingest(batch(window(T0 + 1, target="core"), window(T0 + 1, target="edge")), settled(T0 + 1))
    store.ingest(batch(window(T0 + 2, target="core")), settled(T0 + 2))  # "edge" went quiet
    tracker = slice_tracker(store, "video")
    closed_before = len(tracker.added)
    store.advance((T0 + 3) * W + W + W // 2 - 1)  # T0+2 ends at T0+3; 1.5 intervals later, less 1 ns
    assert len(tracker.added) == closed_before
    store.advance((T0 + 3) * W + W + W // 2)
    assert len(tracker.added) == closed_before + 1 and tracker.added[-1].paths == 1


def test_a_window_for_a_closed_interval_is_late_and_feeds_only_its_path():
    store = recording_store()
    store.ingest(batch(window(T0)), settled(T0))
    store.advance(settled(T0 + 5))
    slice_before = len(slice_tracker(store, "video").added)
    result = store.ingest(batch(window(T0 + 1, target="edge")), settled(T0 + 5))
    assert (result.accepted, result.late) == (1, 1)
    assert len(slice_tracker(store, "video").added) == slice_before
    assert len(path_tracker(store, PathKey("cnty1a", "edge", "video", "stamp")).added) == 1


def test_after_a_start_time_alone_closes_nothing_until_the_catch_up_has_passed():
    # Agents drain their spools after an analyzer outage; each old interval must still get
    # every agent's windows, though its grace passed long ago.
    store = recording_store(catch_up_s=45)
    now = settled(T0 + 30)
    store.ingest(batch(window(T0, source="a"), window(T0, source="b")), now)
    store.ingest(batch(window(T0 + 1, source="a")), now)  # agent b is slower to catch up
    store.ingest(batch(window(T0 + 1, source="b")), now + W)
    added = slice_tracker(store, "video").added
    assert [s.paths for s in added] == [2, 2]  # both agents' windows in both intervals
    store.ingest(batch(window(T0 + 2, source="a")), now + W)
    assert [s.paths for s in added] == [2, 2]  # T0+2 waits for b, though its grace passed long ago
    store.advance(now + 46 * 10**9)
    assert [s.paths for s in added] == [2, 2, 1]


def test_while_the_way_in_is_cut_time_closes_nothing_and_then_waits_a_catch_up_again():
    # The bus intake lost its server: the agents spool, so the intervals are late, not empty.
    store = recording_store(catch_up_s=0)
    store.ingest(batch(window(T0, source="a"), window(T0, source="b")), settled(T0))
    store.ingest(batch(window(T0 + 1, source="a"), window(T0 + 1, source="b")), settled(T0 + 1))
    added = slice_tracker(store, "video").added
    assert len(added) == 2
    store.suspend_time_closing()
    store.advance(settled(T0 + 30))
    assert len(added) == 2 and store.judged_through_ns == (T0 + 2) * W
    store.resume_time_closing(settled(T0 + 30), catch_up_s=45)
    store.ingest(batch(*(window(T0 + i, source="a") for i in range(2, 30))), settled(T0 + 30))
    assert len(added) == 2  # T0+2 waits for b, whose spool drains later
    store.ingest(batch(*(window(T0 + i, source="b") for i in range(2, 30))), settled(T0 + 30) + W)
    assert [s.paths for s in added] == [2] * 30 and store.counters["windows_late"] == 0
    store.ingest(batch(window(T0 + 30, source="a")), settled(T0 + 31))
    store.advance(settled(T0 + 31) + 46 * 10**9)  # b is gone now: time closes again after the catch-up
    assert [s.paths for s in added][-1] == 1


def test_an_agent_still_draining_what_it_kept_renews_the_catch_up():
    # After a long outage the spools take longer to drain than one catch-up.
    store = recording_store(catch_up_s=0)
    store.ingest(batch(window(T0, source="a"), window(T0, source="b")), settled(T0))
    store.suspend_time_closing()
    back = settled(T0 + 30)
    store.resume_time_closing(back, catch_up_s=45)
    for step in range(3):  # a drains for 90 s, a third at a time
        store.ingest(
            batch(*(window(T0 + i, source="a") for i in range(1 + 10 * step, 11 + 10 * step))), back + step * 40 * 10**9
        )
    store.advance(back + 120 * 10**9)  # 45 s after the last batch of a's kept windows, not after the return
    added = slice_tracker(store, "video").added
    assert added == []  # every kept interval still waits for b
    store.ingest(batch(*(window(T0 + i, source="b") for i in range(1, 31))), back + 120 * 10**9)
    assert [s.paths for s in added] == [2] * 31 and store.counters["windows_late"] == 0
    store.ingest(batch(window(T0 + 31, source="b")), back + 121 * 10**9)  # b's own present: not kept
    store.advance(back + 170 * 10**9)
    assert len(added) > 31  # time closes again once nobody drains


def test_open_intervals_are_bounded_in_time_as_well_as_in_number():
    assert WindowStore(interval_s=10).max_open_intervals == MAX_OPEN_INTERVALS
    assert WindowStore(interval_s=1).max_open_intervals == 640  # a 5-minute outage at 1 s intervals fits


def test_slice_and_path_trackers_get_their_own_sums_in_time_order():
    store = recording_store()
    for seq in range(T0, T0 + 4):
        store.ingest(
            batch(window(seq, lost=1), window(seq, target="edge", lost=3), window(seq, slice_="egov")), settled(seq)
        )
    store.advance(settled(T0 + 6))
    video = slice_tracker(store, "video").added
    assert [s.start_ns for s in video] == [seq * W for seq in range(T0, T0 + 4)]
    assert all(s.paths == 2 and s.sent == 20 and s.lost == 4 for s in video)
    core = path_tracker(store, VIDEO).added
    assert all(s.paths == 1 and s.lost == 1 for s in core) and len(core) == 4
    assert all(s.paths == 1 for s in slice_tracker(store, "egov").added)
    assert slice_tracker(store, "video").added[0] == IntervalStats.of(
        [window(T0, lost=1), window(T0, target="edge", lost=3)]
    )


def test_interval_sums_use_the_policy_unavailability_level():
    store = WindowStore({"video": Policy("video", unavailable_loss=0.2)}, tracker_type=RecordingTracker, catch_up_s=0)
    store.ingest(batch(window(T0, lost=3)), settled(T0))
    store.advance(settled(T0 + 3))
    assert slice_tracker(store, "video").added[0].unavailable_paths == 1


def test_a_slice_without_policy_is_refused_and_counted_and_leaves_nothing_behind():
    store = recording_store()
    result = store.ingest(
        batch(window(T0, slice_="lab-experiment"), window(T0), observations=(observation(slice_="lab-experiment"),)),
        settled(T0),
    )
    assert (result.accepted, result.refused, result.observations) == (1, 1, 0)
    assert store.slice_names() == ["egov", "video"] and store.observations() == []
    assert store.refused_counts()["unknown-slice"] == 1 and store.stats()["windows_refused"] == 1
    assert store.slice_verdict("lab-experiment", settled(T0)) is None
    assert store.path_verdict(PathKey("cnty1a", "core", "lab-experiment", "stamp"), settled(T0)) is None


def test_twenty_thousand_made_up_slices_leave_the_store_as_it_was():
    store = recording_store()
    store.ingest(batch(*(window(T0, slice_=f"bogus{i}") for i in range(20_000))), settled(T0))
    assert store.stats()["slices"] == 0 and store.stats()["paths"] == 0
    assert store.refused_counts()["unknown-slice"] == 20_000


def test_new_paths_beyond_the_bound_are_refused_and_counted():
    store = recording_store(max_paths=2)
    result = store.ingest(batch(*(window(T0, target=f"t{i}") for i in range(3))), settled(T0))
    assert (result.accepted, result.refused) == (2, 1) and store.refused_counts()["too-many-paths"] == 1
    assert store.ingest(batch(window(T0 + 1, target="t0")), settled(T0 + 1)).accepted == 1  # known paths go on


def test_refusals_made_before_the_store_are_counted_by_reason():
    store = recording_store()
    store.note_refused("source-mismatch", 3)
    store.note_refused("source-mismatch", 2)
    assert store.refused_counts()["source-mismatch"] == 5


def test_observations_and_agents_not_heard_of_are_forgotten_with_their_paths():
    store = recording_store(forget_after_s=60)
    store.ingest(batch(window(T0), observations=(observation(),), site="cnty1a"), settled(T0))
    store.ingest(batch(window(T0, source="cnty2a"), site="cnty2a"), settled(T0))
    later = settled(T0) + 61 * 10**9
    store.ingest(batch(window(T0 + 7, source="cnty2a"), site="cnty2a"), later)
    store.advance(later + W)
    assert [a.site for a in store.agents()] == ["cnty2a"]
    assert store.observations() == [] and [k.source for k in store.path_keys()] == ["cnty2a"]


def test_a_read_of_every_verdict_closes_what_is_due_once_and_asks_each_tracker_once():
    store = recording_store()
    for i in range(50):
        store.ingest(batch(window(T0, target=f"t{i}"), window(T0, target=f"t{i}", slice_="egov")), settled(T0))
    advances = []
    original = store._advance
    store._advance = lambda now_ns: advances.append(now_ns) or original(now_ns)  # type: ignore[method-assign]
    slices, paths = store.verdicts(settled(T0 + 1))
    assert len(slices) == 2 and len(paths) == 100
    assert len(advances) == 2  # once for the slices, once for the paths: not once per slice or path


def test_a_slice_with_a_policy_and_no_windows_reads_no_data():
    store = WindowStore(default_policies(), catch_up_s=0)
    assert store.slice_verdict("egov", settled(T0)).status == "no-data"
    assert {v.slice for v in store.slice_verdicts(settled(T0))} == {"video", "egov", "data", "best-effort"}


def test_real_trackers_turn_a_lossy_slice_breached_and_leave_the_others_ok():
    store = WindowStore(default_policies(), catch_up_s=0)
    for seq in range(T0, T0 + 12):
        store.ingest(batch(window(seq, lost=8), window(seq, target="edge"), window(seq, slice_="egov")), settled(seq))
    now = settled(T0 + 12)
    assert store.slice_verdict("video", now).status == "breached"
    assert store.slice_verdict("egov", now).status == "ok"
    assert store.path_verdict(VIDEO, now).status == "breached"
    assert store.path_verdict(PathKey("cnty1a", "edge", "video", "stamp"), now).status == "ok"


# -- what else is kept -------------------------------------------------------------------


def test_latest_observation_per_path_and_latest_health_per_agent():
    store = recording_store()
    store.ingest(batch(window(T0), observations=(observation(hops=("fd00::a",)),), health=health()), settled(T0))
    newer = observation(hops=("fd00::b",), observed_ns=(T0 + 1) * W)
    store.ingest(batch(window(T0 + 1), observations=(newer,)), settled(T0 + 1))  # health rides only the first part
    assert store.observations() == [newer]
    (agent,) = store.agents()
    assert agent.health == health() and agent.last_batch_ns == settled(T0 + 1)


def test_history_and_open_intervals_are_bounded():
    store = recording_store(history=5, catch_up_s=10**6)
    for seq in range(T0, T0 + MAX_OPEN_INTERVALS + 10):
        store.ingest(batch(window(seq, source=f"s{seq % 2}")), settled(seq))  # never complete, never due
    assert len(store.recent_windows(PathKey("s0", "core", "video", "stamp"))) == 5
    assert store.stats()["open_intervals"] <= MAX_OPEN_INTERVALS


def test_paths_silent_for_a_day_are_forgotten():
    store = recording_store(forget_after_s=600)
    store.ingest(batch(window(T0), window(T0, target="gone")), settled(T0))
    for seq in range(T0 + 1, T0 + 70):
        store.ingest(batch(window(seq)), settled(seq))
    assert store.path_keys("video") == [VIDEO] and store.stats()["paths_forgotten"] == 1


def test_memory_per_path_stays_within_the_documented_figure():
    """The module docstring's figure: ~15 KB a path with 12 windows of history and a real
    SLA tracker (~5 KB each); 24 KB leaves room for allocator noise."""
    store = WindowStore(default_policies(), catch_up_s=0)
    paths = 500
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for seq in range(T0, T0 + 20):
            store.ingest(batch(*(window(seq, target=f"t{i}") for i in range(paths))), settled(seq))
        per_path = (tracemalloc.get_traced_memory()[0] - before) / paths
    finally:
        tracemalloc.stop()
    print(f"store memory per path: {per_path / 1024:.1f} KB", file=sys.stderr)
    assert per_path < 24 * 1024


def test_a_window_from_far_ahead_of_the_analyzer_clock_is_dropped():
    store = recording_store()
    result = store.ingest(batch(window(T0), window(T0 + 40, target="skewed")), settled(T0))
    assert (result.accepted, result.future) == (1, 1) and store.stats()["windows_future"] == 1
    assert store.judged_through_ns <= settled(T0)


optional_ns = st.none() | st.integers(0, 10**10)


@given(
    sent=st.integers(0, 1000),
    lost=st.integers(0, 1000),
    buckets=st.lists(st.integers(0, 100), min_size=len(RTT_BUCKETS_NS) + 1, max_size=len(RTT_BUCKETS_NS) + 1),
    ipdv=optional_ns,
    pdv=optional_ns,
    owd=optional_ns,
    clock=optional_ns,
    level=st.floats(0, 1),
)
def test_one_window_stats_equal_interval_stats_of_it(sent, lost, buckets, ipdv, pdv, owd, clock, level):
    lost = min(lost, sent)
    fields = record_dict(window(T0)) | {
        "key": window(T0).key,
        "sent": sent,
        "received": sent - lost,
        "lost_reverse": lost,
        "lost_forward": 0,
        "rtt_buckets": tuple(buckets),
        "ipdv_mean_abs_ns": ipdv,
        "pdv_p99_ns": pdv,
        "forward_owd_p99_ns": owd,
        "reverse_owd_p99_ns": owd,
        "clock_error_ns": clock,
    }
    w = PathWindow(**fields)
    assert window_stats(w, level) == IntervalStats.of([w], level)


# -- a new path's warm-up ----------------------------------------------------------------


def test_a_new_paths_first_windows_feed_no_verdict_but_show_in_its_history():
    # Neighbour discovery and a reflector starting make a path's first probes slow or lost.
    store = recording_store(warm_up_windows=2)
    for seq in range(T0, T0 + 5):
        store.ingest(batch(window(seq, lost=10 if seq == T0 else 0)), settled(seq))
    assert [s.start_ns // W for s in path_tracker(store, VIDEO).added] == [T0 + 2, T0 + 3, T0 + 4]
    assert [s.start_ns // W for s in slice_tracker(store, "video").added] == [T0 + 2, T0 + 3, T0 + 4]
    assert len(store.recent_windows(VIDEO)) == 5
    assert store.stats()["windows_warm_up"] == 2
    # A second path appearing later has its own warm-up; the first path's windows count on.
    edge = PathKey("cnty1a", "edge", "video", "stamp")
    store.ingest(batch(window(T0 + 5), window(T0 + 5, target="edge")), settled(T0 + 5))
    assert len(path_tracker(store, VIDEO).added) == 4 and path_tracker(store, edge).added == []


# -- a stall every agent shares -----------------------------------------------------------


def test_a_stall_of_every_agent_at_once_leaves_no_gap_in_the_verdicts():
    # Every agent on one machine held up for 3 intervals, then shipping what it kept: their
    # windows still make whole intervals, instead of intervals closed empty by time.
    store = recording_store(stall_intervals=5)
    for seq in range(T0, T0 + 3):
        store.ingest(batch(window(seq, source="a"), window(seq, source="b")), settled(seq))
    store.advance(settled(T0 + 5))  # nobody shipped T0+3..T0+5 yet
    for seq in range(T0 + 3, T0 + 6):
        store.ingest(batch(window(seq, source="a"), window(seq, source="b")), settled(T0 + 5))
    store.ingest(batch(window(T0 + 6, source="a"), window(T0 + 6, source="b")), settled(T0 + 6))
    assert [s.paths for s in slice_tracker(store, "video").added] == [2] * 7
    assert store.stats()["windows_late"] == 0


def test_a_stall_longer_than_the_tolerance_closes_by_time():
    store = recording_store(stall_intervals=5)
    store.ingest(batch(window(T0, source="a"), window(T0, source="b")), settled(T0))
    store.ingest(batch(window(T0 + 1, source="a"), window(T0 + 1, source="b")), settled(T0 + 1))
    store.advance(settled(T0 + 4))
    assert store.judged_through_ns == (T0 + 2) * W  # held: every agent is behind
    store.advance(settled(T0 + 8))
    assert store.judged_through_ns == (T0 + 7) * W  # everyone silent this long: the slots close empty


def test_a_partition_store_tells_each_closed_slice_interval_and_how_far_each_slice_is_closed():
    told = []
    store = WindowStore(default_policies(), slice_closed=lambda name, stats: told.append((name, stats.start_ns)))
    now = (T0 + 10) * W
    assert store.closed_through() == dict.fromkeys(default_policies(), -1)
    for seq in (T0, T0 + 1):
        store.ingest(batch(window(seq)), now)
    assert told == [("video", T0 * W), ("video", (T0 + 1) * W)]
    marks = store.closed_through()
    assert marks["video"] == T0 + 1 and marks["egov"] == T0 + 1  # a slice without windows: the frontier


def test_a_combined_slice_interval_feeds_the_slice_tracker_once_and_in_order():
    store = WindowStore(default_policies())
    stats = IntervalStats.of([window(T0)])
    assert store.add_slice_interval("video", stats)
    assert not store.add_slice_interval("video", stats)  # not after the last one closed
    assert not store.add_slice_interval("no-such-slice", stats)
    assert store.judged_through_ns == (T0 + 1) * W
    assert store.slice_verdict("video", (T0 + 2) * W).intervals == 1


def test_path_trackers_as_columns_judge_as_tracker_objects_through_the_store():
    """The store's default path trackers (analyzer.sla.path_trackers) against one SlaTracker
    object per path, on the same batches: lossy, silent, late, missing and doubled windows,
    forgotten paths; every verdict and the snapshots equal."""
    rng = random.Random(11)
    options = {"catch_up_s": 0, "forget_after_s": 120}
    columns = WindowStore(default_policies(), **options)
    objects = WindowStore(default_policies(), tracker_type=SlaTracker, **options)
    targets = [f"t{i}" for i in range(12)]
    late = []
    for seq in range(T0, T0 + 60):
        windows = []
        for i, target in enumerate(targets[: 12 if seq < T0 + 40 else 6]):  # half go silent: forgotten
            draw = rng.random()
            if draw < 0.05:
                continue  # missing: its interval closes by time
            sent = 10 * (draw > 0.08)  # now and then a window without probes
            lost = rng.choice((0,) * 30 + (1, 3, 9, 10)) if i % 3 and sent else 0  # a third never lossy
            made = window(seq, target=target, slice_=("video", "egov")[i % 2], lost=lost, sent=sent)
            (late if draw > 0.97 else windows).append(made)
        for store in (columns, objects):
            store.ingest(batch(*windows), settled(seq))
            if seq % 7 == 0 and late:
                store.ingest(batch(*late), settled(seq))
        if seq % 7 == 0:
            late = []
        now = settled(seq)
        assert columns.verdicts(now) == objects.verdicts(now)
    assert columns.stats() == objects.stats() and columns.stats()["paths_forgotten"] == 6
    assert json.loads(snapshot_text(columns))["paths"] == json.loads(snapshot_text(objects))["paths"]
