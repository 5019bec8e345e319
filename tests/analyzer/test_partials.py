"""Partition reports: what a partition's store closed goes out once, with watermarks read
before it; a report that does not add up is refused naming the field."""

from __future__ import annotations

import json

import pytest

from analyzer.partials import MAX_REPORT_INTERVALS, MalformedReport, PartialsOutbox, PartitionReport
from analyzer.sla.series import IntervalStats
from analyzer.sla.verdicts import default_policies
from analyzer.store.memory import WindowStore
from tests.analyzer_support import T0, W, batch, window

NOW_NS = (T0 + 10) * W


def fed_store(outbox: PartialsOutbox, intervals: int) -> WindowStore:
    store = WindowStore(default_policies(), slice_closed=outbox)
    for seq in range(T0, T0 + intervals):
        store.ingest(batch(window(seq), window(seq, target="prov1", lost=2)), NOW_NS)
    return store


def test_closed_intervals_go_out_once_with_the_watermarks_and_round_trip_exactly():
    outbox = PartialsOutbox(1, 2)
    store = fed_store(outbox, 3)
    report = outbox.report(store)
    assert [i.stats.start_ns for i in report.intervals] == [T0 * W, (T0 + 1) * W, (T0 + 2) * W]
    assert report.closed_through["video"] == T0 + 2 and report.partition == 1
    expected = IntervalStats.of([window(T0 + 2), window(T0 + 2, target="prov1", lost=2)])
    assert PartitionReport.decode(report.encode()).intervals[2].stats.stats() == expected
    outbox.sent(report)
    assert len(outbox) == 0 and outbox.report(store) is None  # nothing new: nothing to send
    store.ingest(batch(window(T0 + 3), window(T0 + 3, target="prov1")), NOW_NS)
    assert [i.stats.start_ns for i in outbox.report(store).intervals] == [(T0 + 3) * W]


def test_an_interval_closed_while_a_report_is_on_its_way_stays_for_the_next():
    outbox = PartialsOutbox(0, 1)
    store = fed_store(outbox, 2)
    report = outbox.report(store)
    assert [i.stats.start_ns for i in report.intervals] == [T0 * W, (T0 + 1) * W]
    store.ingest(batch(window(T0 + 2), window(T0 + 2, target="prov1")), NOW_NS)
    outbox.sent(report)
    assert [i.stats.start_ns for i in outbox.report(store).intervals] == [(T0 + 2) * W]


def test_a_full_outbox_drops_its_oldest_and_counts_them():
    outbox = PartialsOutbox(0, 1, max_intervals=2)
    fed_store(outbox, 4)
    assert len(outbox) == 2 and outbox.dropped == 2


def good_report() -> dict:
    outbox = PartialsOutbox(0, 2)
    return json.loads(outbox.report(fed_store(outbox, 2)).encode())


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda r: r.update(partition=2), "report"),
        (lambda r: r["intervals"][0]["stats"].update(received=10**6), "intervals.0.stats"),
        (lambda r: r["intervals"][0]["stats"].update(rtt_buckets=[1, 2]), "intervals.0.stats.rtt_buckets"),
        (lambda r: r["intervals"][0]["stats"].update(sent=-1), "intervals.0.stats.sent"),
        (lambda r: r["intervals"][0].update(slice=""), "intervals.0.slice"),
        (lambda r: r.update(intervals=r["intervals"] * (MAX_REPORT_INTERVALS + 1)), "intervals"),
        (lambda r: r.update(closed_through={"video": 2**64}), "closed_through.video"),
    ],
)
def test_a_report_that_does_not_add_up_or_exceeds_a_bound_is_refused_naming_the_field(change, where):
    report = good_report()
    change(report)
    with pytest.raises(MalformedReport) as refused:
        PartitionReport.decode(json.dumps(report).encode())
    assert str(refused.value).startswith(where)


def test_bytes_that_are_not_a_report_are_refused():
    for data in (b"", b"[]", b'{"partition": 0}', b"\xff" * 10):
        with pytest.raises(MalformedReport):
            PartitionReport.decode(data)
