"""HintTracker: diagnoses epoch by epoch become hints with first/last seen times, shown once
two epochs in a row inferred them, that stay while the fault lasts (a quiet epoch is not a
healing) and clear soon after it heals; and the runner that feeds them once per closed
interval."""

from __future__ import annotations

import time

import pytest

from analyzer.api.models import Hint as HintModel
from analyzer.rootcause.hints import CLEAR_AFTER_EPOCHS, CONFIRM_EPOCHS, HintRow, HintTracker, hint_rows
from analyzer.rootcause.model import Diagnosis, Epoch, PathEvidence
from analyzer.sla.verdicts import default_policies

S = 1_000_000_000


def loss(suspects=("prov2>city2a",), slices=("video",), confidence=0.9) -> Diagnosis:
    return Diagnosis("link-loss", suspects, slices, confidence, ("cnty1a>cnty2a/video/stamp lost 4/10",))


def test_a_hint_keeps_its_first_seen_takes_the_latest_details_and_clears_after_quiet_epochs():
    tracker = HintTracker()
    tracker.update([loss(confidence=0.6)], 10 * S)
    [hint] = tracker.update([loss(slices=("video", "egov"), confidence=0.9)], 11 * S)
    assert (hint.first_seen_ns, hint.last_seen_ns) == (10 * S, 11 * S)
    assert hint.slices == ("egov", "video") and hint.confidence == 0.9 and hint.suspects == ("prov2>city2a",)
    for n in range(1, CLEAR_AFTER_EPOCHS):  # quiet epochs short of the limit: still there, as last seen
        [kept] = tracker.update([], (11 + n) * S)
        assert kept.last_seen_ns == 11 * S
    assert tracker.update([], (11 + CLEAR_AFTER_EPOCHS) * S) == ()
    assert tracker.hints() == () and tracker.rows() == []


def test_a_quiet_epoch_in_the_middle_does_not_restart_the_hint():
    tracker = HintTracker()
    tracker.update([loss()], 1 * S)
    tracker.update([loss()], 2 * S)
    tracker.update([], 3 * S)
    [hint] = tracker.update([loss()], 4 * S)
    assert hint.first_seen_ns == 1 * S


def test_a_diagnosis_of_one_epoch_alone_never_shows():
    """The interval a fault begins in can point at the wrong place (the module's docstring):
    in the lab, 10% loss on core-prov2 first named prov2>city2b, then core-prov2."""
    assert CONFIRM_EPOCHS == 2
    tracker = HintTracker()
    assert tracker.update([loss(("prov2>city2b", "city2b>cnty2b"), confidence=0.6)], 1 * S) == ()
    assert tracker.update([loss(("core>prov2",), confidence=1.0)], 2 * S) == ()
    [hint] = tracker.update([loss(("core>prov2",), confidence=1.0)], 3 * S)
    assert hint.suspects == ("core>prov2",) and (hint.first_seen_ns, hint.last_seen_ns) == (2 * S, 3 * S)


def test_a_pending_hint_is_confirmed_by_its_kind_on_a_class_that_shares_a_part_with_it():
    """As its evidence firms up a fault's class may grow (a direction no probe can clear named
    with it) and its kind firm up: the same fault, first seen when it was first inferred."""
    tracker = HintTracker()
    tracker.update([Diagnosis("congestion|slice-isolation", ("a>b",), ("best-effort",), 0.6)], 1 * S)
    [hint] = tracker.update([Diagnosis("slice-isolation", ("a>b", "b>a"), ("best-effort",), 0.8)], 2 * S)
    assert (hint.kind, hint.suspects, hint.first_seen_ns) == ("slice-isolation", ("a>b", "b>a"), 1 * S)
    # another kind on the same part, or the same kind elsewhere, is not a continuation
    tracker = HintTracker()
    tracker.update([loss(("a>b",)), Diagnosis("latency-shift", ("c>d",), ("video",), 0.9)], 1 * S)
    assert tracker.update([Diagnosis("latency-shift", ("a>b",), ("video",), 0.9), loss(("e>f",))], 2 * S) == ()


def test_a_direct_diagnosis_shows_at_once_and_is_kept_over_an_inferred_one_of_the_same_key():
    tracker = HintTracker()
    direct = Diagnosis("link-loss", ("a>b",), ("video",), 0.99, ("segment a>b lost 1%",))
    [hint] = tracker.update([loss(("a>b",), confidence=0.5)], 1 * S, direct=[direct])
    assert hint.evidence == direct.evidence and hint.first_seen_ns == 1 * S
    with pytest.raises(ValueError, match="at least 1"):
        HintTracker(confirm_epochs=0)
    assert HintTracker(confirm_epochs=1).update([loss()], 1 * S)  # the old behaviour, where asked for


def test_hints_are_told_apart_by_kind_and_suspects_and_ordered_by_confidence():
    tracker = HintTracker()
    diagnoses = [
        loss(("b>c", "a>b"), confidence=0.5),
        Diagnosis("congestion", ("a>b",), ("data",), 0.8),
        loss(("a>b", "b>c"), confidence=0.4),
    ]
    tracker.update(diagnoses, 4 * S)
    hints = tracker.update(diagnoses, 5 * S)
    assert [(h.kind, h.suspects) for h in hints] == [("congestion", ("a>b",)), ("link-loss", ("b>c", "a>b"))]
    assert tracker.rows() == [
        HintRow("data", "congestion", "a>b", 0.8),
        HintRow("video", "link-loss", "a>b", 0.5),
        HintRow("video", "link-loss", "b>c", 0.5),
    ]
    # What the API makes of them.
    assert HintModel.model_validate(hints[1], from_attributes=True).suspects == ["b>c", "a>b"]


def test_rows_keep_the_strongest_confidence_per_slice_kind_and_suspect():
    tracker = HintTracker(confirm_epochs=1)
    tracker.update([loss(("x",), confidence=0.3), loss(("x", "y"), confidence=0.7)], S)
    assert hint_rows(tracker.hints()) == [
        HintRow("video", "link-loss", "x", 0.7),
        HintRow("video", "link-loss", "y", 0.7),
    ]


def test_clearing_needs_at_least_one_epoch():
    with pytest.raises(ValueError, match="at least 1"):
        HintTracker(clear_after_epochs=0)


def test_fed_by_a_stand_in_engine_the_tracker_follows_a_fault_and_its_healing():
    def diagnose(epoch: Epoch) -> list[Diagnosis]:  # stands in for analyzer.rootcause.engine
        bad = [p for p in epoch.paths if p.loss > 0.2]
        return [loss(suspects=(bad[0].forward[3],), slices=tuple({p.slice for p in bad}))] if bad else []

    def epoch(at_s: int, lost: int) -> Epoch:
        path = PathEvidence(
            "cnty1a>core/video/stamp",
            "cnty1a",
            "core",
            "core",
            "video",
            ("host:cnty1a", "cnty1a", "cnty1a>city1a", "city1a", "city1a>prov1"),
            None,
            10,
            lost,
        )
        return Epoch((path,), (), at_s * S)

    tracker = HintTracker()
    timeline = [0, 0, 5, 4, 6, 0, 0, 0]
    present = [bool(tracker.update(diagnose(epoch(t, lost)), t * S)) for t, lost in enumerate(timeline)]
    # shown from the second lossy epoch, first seen at the first; gone at the second quiet one
    assert present == [False, False, False, True, True, True, False, False]
    assert tracker.hints() == ()
    tracker.update(diagnose(epoch(9, 5)), 9 * S)
    tracker.update(diagnose(epoch(10, 5)), 10 * S)
    [hint] = tracker.hints()
    assert hint.first_seen_ns == 9 * S and hint.suspects == ("city1a",)  # a new fault: a new first seen


def test_a_note_between_epochs_raises_at_once_and_ages_nothing():
    tracker = HintTracker()
    tracker.update([loss(suspects=("a>b",))], 9 * S)
    tracker.update([loss(suspects=("a>b",))], 10 * S)
    tracker.update([], 11 * S)  # a>b missed one epoch
    # stamped with the end of the interval it falls in (the open one, ending at 12 s)
    [new, old] = tracker.note([loss(suspects=("c>d",), confidence=0.95)], 12 * S)
    assert new.suspects == ("c>d",) and new.first_seen_ns == new.last_seen_ns == 12 * S
    assert old.suspects == ("a>b",)  # a note is no epoch: a>b has not missed another
    # the epoch closing that interval still diagnoses c>d, with the same stamp
    [kept] = tracker.update([loss(suspects=("c>d",))], 12 * S)
    assert (kept.first_seen_ns, kept.last_seen_ns) == (12 * S, 12 * S)
    # a late block's note naming an older interval moves last seen back never
    [kept] = tracker.note([loss(suspects=("c>d",))], 10 * S)
    assert (kept.first_seen_ns, kept.last_seen_ns) == (12 * S, 12 * S)
    assert tracker.update([], 13 * S) and tracker.update([], 14 * S) == ()


def test_the_runner_names_a_losing_segment_as_its_blocks_are_paired_without_waiting_for_an_epoch():
    from analyzer.service import RootCauseRunner
    from analyzer.store.memory import WindowStore
    from tests.analyzer.insitu.insitu_support import path_blocks
    from tests.support import wait_until

    store = WindowStore(default_policies(), interval_s=3600)  # no interval closes during the test
    runner = RootCauseRunner(store, diagnose=lambda epoch: [], poll_s=0.01)
    try:
        store.segments.add(path_blocks([[1000], [1000], [1000], [1000]]), time.time_ns())
        assert store.segments.losing_found == 0  # a clean block: nothing to diagnose between epochs
        store.segments.add(path_blocks([[1000], [990], [990], [990]], flow=7), time.time_ns())
        wait_until(runner.hints, what="a hint from the losing segment")
        [hint] = runner.hints()
    finally:
        runner.stop()
    assert (hint.kind, hint.suspects) == ("link-loss", ("cnty1a>city1a",)) and runner.epochs == 0


def test_hint_times_of_notes_and_epochs_are_interval_ends_monotonic_and_comparable():
    """A note between epochs used to be stamped with the wall clock, the epochs with their
    interval's end: a noted hint was first seen after the epoch that confirmed it, and its
    last seen stood still while epochs went on."""
    from analyzer.service import RootCauseRunner
    from analyzer.store.memory import WindowStore
    from tests.analyzer.insitu.insitu_support import path_blocks
    from tests.support import wait_until

    store = WindowStore(default_policies(), interval_s=3600)  # no interval closes during the test
    interval_ns = store.interval_ns
    runner = RootCauseRunner(store, diagnose=lambda epoch: [], poll_s=0.01)
    try:
        before_ns = time.time_ns()
        store.segments.add(path_blocks([[1000], [990], [990], [990]], flow=7), time.time_ns())
        wait_until(runner.hints, what="a hint from the losing segment")
        after_ns = time.time_ns()
    finally:
        runner.stop()
    [noted] = runner.hints()
    ends = {(t // interval_ns + 1) * interval_ns for t in (before_ns, after_ns)}
    assert noted.first_seen_ns == noted.last_seen_ns and noted.first_seen_ns in ends
    seen = [(noted.first_seen_ns, noted.last_seen_ns)]
    for at_ns in (noted.first_seen_ns, noted.first_seen_ns + interval_ns):  # the epochs closing it and the next
        runner.run_once(at_ns)
        [hint] = runner.hints()
        seen.append((hint.first_seen_ns, hint.last_seen_ns))
        assert hint.first_seen_ns <= at_ns == hint.last_seen_ns
    assert all(first <= last and first % interval_ns == last % interval_ns == 0 for first, last in seen)
    assert [last for _, last in seen] == sorted(last for _, last in seen)
    assert {first for first, _ in seen} == {noted.first_seen_ns}


def test_the_runner_infers_once_per_closed_interval_in_its_own_thread_and_survives_a_failing_engine():
    from dataclasses import replace

    from analyzer.service import RootCauseRunner
    from analyzer.store.memory import WindowStore
    from collector.contract.records import PathObservation
    from tests.analyzer_support import batch, observation, window
    from tests.support import wait_until

    store = WindowStore(default_policies(), interval_s=0.2, catch_up_s=0)
    interval_ns = store.interval_ns
    calls = []

    def diagnose(epoch: Epoch) -> list[Diagnosis]:
        calls.append(epoch.at_ns)
        if len(calls) == 1:
            raise RuntimeError("a bug in the engine")
        return [loss(suspects=(p.forward[3],), slices=(p.slice,)) for p in epoch.paths if p.lost]

    runner = RootCauseRunner(store, declared_names={"fd00::a": "city1a"}, diagnose=diagnose)
    try:
        traced: PathObservation = observation(hops=("fd00::a", "fd00::1"))

        def ship_until_hinted() -> bool:  # a lossy window of the interval just past, until a hint shows
            if runner.hints():
                return True
            number = time.time_ns() // interval_ns - 1
            lossy = replace(window(number, lost=4), start_ns=number * interval_ns, end_ns=(number + 1) * interval_ns)
            store.ingest(batch(lossy, observations=(traced,)), time.time_ns())
            return False

        wait_until(ship_until_hinted, what="a hint")
        [hint] = runner.hints()
    finally:
        runner.stop()
    assert hint.suspects == ("city1a",) and hint.slices == ("video",)
    assert runner.failures == 1 and runner.epochs >= 2
    assert calls == sorted(set(calls))  # one inference per closed interval, in order
    assert runner.worst_seconds >= runner.last_seconds > 0
    at_ns, diagnoses, _ = runner.recent[-1]
    assert at_ns == runner.last_epoch.at_ns and diagnoses
    assert runner.last_epoch.paths[0].path_id == "cnty1a>core/video/stamp"


def test_a_starved_slice_told_less_surely_keeps_its_hint_and_first_seen_instead_of_a_second_one():
    def starved(kind: str) -> Diagnosis:
        return Diagnosis(kind, ("p2>r",), ("best-effort",), 0.8, ("best-effort lost 5%",))

    tracker = HintTracker()
    tracker.update([starved("slice-isolation")], 1 * S)
    [hint] = tracker.update([starved("congestion|slice-isolation")], 2 * S)
    assert (hint.kind, hint.first_seen_ns, hint.last_seen_ns) == ("congestion|slice-isolation", 1 * S, 2 * S)
    [hint] = tracker.update([starved("slice-isolation")], 3 * S)
    assert (hint.kind, hint.first_seen_ns) == ("slice-isolation", 1 * S)
    # a different fault on the same link is a hint of its own
    tracker.update([starved("slice-isolation"), loss(suspects=("p2>r",))], 4 * S)
    assert len(tracker.update([starved("slice-isolation"), loss(suspects=("p2>r",))], 5 * S)) == 2
