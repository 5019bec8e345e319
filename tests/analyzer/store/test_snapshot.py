"""The store's snapshot: a restart keeps verdicts, deduplication and open intervals; the file
is replaced atomically; a damaged or mismatched one is refused naming the file."""

from __future__ import annotations

import json

import pytest

from analyzer.sla.verdicts import SlaTracker, default_policies
from analyzer.store.memory import WindowStore
from analyzer.store.snapshot import restore_into, restore_snapshot, save_snapshot, snapshot_text
from collector.contract.records import PathKey
from tests.analyzer_support import (
    T0,
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


def feed(store: WindowStore, seqs, **window_options) -> None:
    for seq in seqs:
        store.ingest(
            batch(
                window(seq, **window_options),
                window(seq, target="edge"),
                observations=(observation(),),
                health=health(),
            ),
            settled(seq),
        )


def test_a_restart_keeps_verdicts_and_deduplication(tmp_path):
    policies = default_policies()
    store = WindowStore(policies, catch_up_s=0)
    feed(store, range(T0, T0 + 10), lost=8)
    now = settled(T0 + 10)
    before = store.slice_verdict("video", now)
    path_before = store.path_verdict(VIDEO, now)
    assert before.status == "breached"
    save_snapshot(store, tmp_path / "state.json")

    restored = restore_snapshot(tmp_path / "state.json", policies, catch_up_s=0)
    assert restored.slice_verdict("video", now) == before
    assert restored.path_verdict(VIDEO, now) == path_before
    assert restored.observations() == store.observations() and restored.agents() == store.agents()
    assert restored.latest_window(VIDEO) == store.latest_window(VIDEO)
    resent = restored.ingest(batch(window(T0 + 9, lost=8), window(T0 + 9, target="edge")), now)
    assert (resent.accepted, resent.duplicates) == (0, 2)
    assert restored.stats()["windows_ingested"] == store.stats()["windows_ingested"]
    feed(restored, range(T0 + 10, T0 + 12), lost=8)  # trackers go on from where they were
    assert restored.slice_verdict("video", settled(T0 + 12)).intervals == before.intervals + 2


def test_windows_of_open_intervals_survive_a_restart(tmp_path):
    store = recording_store(catch_up_s=3600)
    store.ingest(batch(window(T0), window(T0, target="edge")), settled(T0))
    store.ingest(batch(window(T0 + 1)), settled(T0 + 1))  # T0 closes; T0+1 waits for "edge"
    save_snapshot(store, tmp_path / "state.json")
    restored = restore_snapshot(tmp_path / "state.json", store.policies, tracker_type=RecordingTracker, catch_up_s=3600)
    restored.ingest(batch(window(T0 + 1, target="edge")), settled(T0 + 1))
    added = slice_tracker(restored, "video").added
    assert added[-1].paths == 2 and added[-1].start_ns == (T0 + 1) * W


def test_a_snapshot_is_replaced_atomically_and_is_json(tmp_path):
    store = recording_store()
    feed(store, range(T0, T0 + 3))
    target = tmp_path / "state.json"
    save_snapshot(store, target)
    save_snapshot(store, target)
    assert json.loads(target.read_text())["format"] == "xnetmon-analyzer-store"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary left behind


def test_a_damaged_snapshot_is_refused_naming_the_file(tmp_path):
    target = tmp_path / "state.json"
    target.write_text('{"format": "xnetmon-analyzer-store", "version": 1, "interval_s": 10, "paths": [{}]}')
    with pytest.raises(ValueError, match=r"state\.json: damaged snapshot"):
        restore_snapshot(target, {}, tracker_type=RecordingTracker)
    target.write_text("not json")
    with pytest.raises(ValueError, match=r"state\.json: not a store snapshot"):
        restore_snapshot(target, {}, tracker_type=RecordingTracker)


def _reshaped(state: dict, change: str) -> bytes:
    """The saved `state` with one part given a shape the reader does not expect."""
    if change == "counters-a-list":
        state["counters"] = ["windows_ingested"]
    elif change == "observations-a-mapping":
        state["observations"] = {"a": 1}
    elif change == "interval-a-word":
        state["interval_s"] = "ten"
    elif change == "interval-zero":
        state["interval_s"] = 0
    elif change == "paths-of-lists":
        state["paths"] = [[1, 2]]
    elif change == "pending-of-unknown-path":
        stranger = {**state["paths"][0]["key"], "target": "x"}
        state["slices"][0]["pending"] = [dict(state["paths"][0]["latest"], key=stranger)]
    elif change == "deeply-nested":
        return b'{"format": "xnetmon-analyzer-store", "version": 1, "paths": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    elif change == "not-text":
        return b"\xff\xfe\x00{"
    return json.dumps(state).encode()


@pytest.mark.parametrize(
    "change",
    [
        "counters-a-list",
        "observations-a-mapping",
        "interval-a-word",
        "interval-zero",
        "paths-of-lists",
        "pending-of-unknown-path",
        "deeply-nested",
        "not-text",
    ],
)
def test_a_snapshot_of_the_wrong_shape_is_refused_naming_the_file(tmp_path, change):
    store = recording_store()
    feed(store, range(T0, T0 + 2))
    target = tmp_path / "state.json"
    save_snapshot(store, target)
    target.write_bytes(_reshaped(json.loads(target.read_text()), change))
    with pytest.raises(ValueError, match=r"state\.json: (damaged|not a store) snapshot") as refused:
        restore_snapshot(target, store.policies, tracker_type=RecordingTracker)
    assert type(refused.value) is ValueError  # not a stray subclass with a decoder's wording alone


def test_a_window_in_a_snapshot_is_checked_as_a_shipped_one_is(tmp_path):
    store = recording_store()
    feed(store, range(T0, T0 + 2))
    target = tmp_path / "state.json"
    save_snapshot(store, target)
    state = json.loads(target.read_text())
    state["paths"][0]["latest"]["sent"] = "ten"
    target.write_text(json.dumps(state))
    with pytest.raises(
        ValueError, match=r"state.json: damaged snapshot .*paths\[0\]\.latest\.sent: expected a non-negative"
    ):
        restore_snapshot(target, store.policies, tracker_type=RecordingTracker)


def test_a_snapshot_of_another_interval_length_is_refused(tmp_path):
    store = recording_store()
    feed(store, range(T0, T0 + 2))
    save_snapshot(store, tmp_path / "state.json")
    with pytest.raises(ValueError, match=r"saved with 10\.0 s intervals, not 5\.0 s"):
        restore_snapshot(tmp_path / "state.json", store.policies, tracker_type=RecordingTracker, interval_s=5.0)


@pytest.mark.parametrize("interval", ["null", '"ten"', "1e400", "-10"])
def test_a_damaged_interval_length_is_refused_naming_the_file(tmp_path, interval):
    """Found by fuzzing (tests/fuzz/corpus/snapshot/crash-interval-missing): a snapshot without
    a usable interval_s raised a TypeError (OverflowError for 1e400) from the store's constructor."""
    target = tmp_path / "state.json"
    target.write_text(f'{{"format": "xnetmon-analyzer-store", "version": 1, "interval_s": {interval}, "paths": []}}')
    with pytest.raises(ValueError, match=r"state\.json: damaged snapshot"):
        restore_snapshot(target, {}, tracker_type=RecordingTracker)


def test_json_nested_too_deep_is_refused_naming_the_file(tmp_path):
    """Found with the snapshot fuzz target (tests/fuzz/corpus/snapshot/crash-nested): a file of
    JSON nested 100,000 deep raised RecursionError, a traceback instead of a refusal."""
    target = tmp_path / "state.json"
    target.write_text("[" * 100_000)
    with pytest.raises(ValueError, match=r"state\.json: not a store snapshot \(RecursionError"):
        restore_snapshot(target, {}, tracker_type=RecordingTracker)


def test_restore_into_fills_an_empty_store_and_refuses_one_that_holds_windows():
    policies = default_policies()
    store = WindowStore(policies, catch_up_s=0)
    feed(store, range(T0, T0 + 3))
    text = snapshot_text(store)
    empty = WindowStore(policies, catch_up_s=0)
    restore_into(empty, text, "checkpoint X")
    assert empty.latest_windows() == store.latest_windows()
    assert empty.counters == store.counters
    with pytest.raises(ValueError, match="checkpoint X: the store holds windows already"):
        restore_into(empty, text, "checkpoint X")
    with pytest.raises(ValueError, match=r"checkpoint Y: saved with 10\.0 s intervals, not 5\.0 s"):
        restore_into(WindowStore(policies, interval_s=5.0), text, "checkpoint Y")


def test_a_snapshot_of_tracker_objects_restores_into_columns_and_goes_on_alike(tmp_path):
    """A snapshot written by a store with one SlaTracker object per path (as before the
    columns) restores into the default store, whose verdicts then go on as the objects' do."""
    policies = default_policies()
    objects = WindowStore(policies, tracker_type=SlaTracker, catch_up_s=0)
    feed(objects, range(T0, T0 + 10), lost=8)
    save_snapshot(objects, tmp_path / "state.json")
    columns = restore_snapshot(tmp_path / "state.json", policies, catch_up_s=0)
    assert columns._slices["video"].path_trackers is not None
    for seq in range(T0 + 10, T0 + 16):
        feed(objects, [seq], lost=seq % 3)
        feed(columns, [seq], lost=seq % 3)
        assert columns.verdicts(settled(seq)) == objects.verdicts(settled(seq))
    restored, kept = json.loads(snapshot_text(columns)), json.loads(snapshot_text(objects))
    assert restored["paths"] == kept["paths"]  # (a slice's expected paths are a set: any order)
    assert [s["tracker"] for s in restored["slices"]] == [s["tracker"] for s in kept["slices"]]
