"""The combiner: the partitions' partial sums give the slice verdicts of one analyzer over
every path, interval by interval; an interval waits for every partition, or its grace."""

from __future__ import annotations

from analyzer.combiner import PartialsCombiner
from analyzer.partials import PartialsOutbox, PartitionReport
from analyzer.sla.series import IntervalStats
from analyzer.sla.verdicts import default_policies
from analyzer.store.memory import WindowStore
from tests.analyzer.partition_support import INTERVALS, NOW_NS, SITES, site_batch
from tests.analyzer_support import T0, W, window

PARTITIONS = 2


def partition_of(site: str) -> int:
    return SITES.index(site) % PARTITIONS


def report_through_the_wire(outbox: PartialsOutbox, store: WindowStore) -> PartitionReport | None:
    report = outbox.report(store)
    if report is None:
        return None
    outbox.sent(report)
    return PartitionReport.decode(report.encode())


def test_two_partitions_and_a_combiner_judge_slices_as_one_analyzer_does_interval_by_interval():
    single = WindowStore(default_policies())
    outboxes = [PartialsOutbox(i, PARTITIONS) for i in range(PARTITIONS)]
    partitions = [WindowStore(default_policies(), slice_closed=outbox) for outbox in outboxes]
    combined = WindowStore(default_policies())
    combiner = PartialsCombiner(combined, PARTITIONS)
    statuses = set()
    for seq in range(T0, T0 + INTERVALS):
        for site in SITES:
            single.ingest(site_batch(site, seq), NOW_NS)
            partitions[partition_of(site)].ingest(site_batch(site, seq), NOW_NS)
        for outbox, store in zip(outboxes, partitions, strict=True):
            report = report_through_the_wire(outbox, store)
            if report is not None:
                combiner.add(report, NOW_NS)
        expected = single.slice_verdict_map(NOW_NS)
        assert combined.slice_verdict_map(NOW_NS) == expected, f"interval {seq - T0}"
        statuses |= {(name, v.status) for name, v in expected.items() if v is not None}
    # the story went through more than ok: the comparison is not of fresh trackers
    assert ("egov", "breached") in statuses or ("egov", "at-risk") in statuses
    assert combined.judged_through_ns == single.judged_through_ns > 0
    assert combiner.intervals_combined == 2 * INTERVALS and combiner.intervals_by_grace == 0
    assert combiner.partials_late == 0 and combiner.reports_refused == 0


def partial(partition: int, seq: int, closed_through: int, slice_: str = "video", partitions: int = 2):
    stats = IntervalStats.of([window(seq, source=f"cnty{partition}", slice_=slice_)])
    report = {
        "partition": partition,
        "partitions": partitions,
        "interval_ns": W,
        "judged_through_ns": (closed_through + 1) * W,
        "closed_through": {slice_: closed_through},
        "intervals": [{"slice": slice_, "stats": _fields(stats)}],
    }
    return PartitionReport.model_validate(report)


def _fields(stats: IntervalStats) -> dict:
    return {name: getattr(stats, name) for name in IntervalStats.__dataclass_fields__}


def test_an_interval_waits_for_every_partition_then_closes_with_their_sums():
    store = WindowStore(default_policies())
    combiner = PartialsCombiner(store, 2, grace_s=30)
    combiner.add(partial(0, T0, T0), NOW_NS)
    assert combiner.intervals_combined == 0 and combiner.waiting() == 1  # partition 1 has not passed T0
    combiner.add(partial(1, T0, T0), NOW_NS)
    assert combiner.intervals_combined == 1 and combiner.waiting() == 0
    assert store.judged_through_ns == (T0 + 1) * W
    assert store.slice_verdict("video", NOW_NS).intervals == 1


def test_a_partition_that_does_not_report_costs_the_others_only_the_grace():
    store = WindowStore(default_policies())
    combiner = PartialsCombiner(store, 2, grace_s=30)
    combiner.add(partial(0, T0, T0), NOW_NS)
    combiner.advance(NOW_NS + 29 * 10**9)
    assert combiner.intervals_combined == 0
    combiner.advance(NOW_NS + 30 * 10**9)
    assert combiner.intervals_combined == 1 and combiner.intervals_by_grace == 1
    combiner.add(partial(1, T0, T0), NOW_NS + 31 * 10**9)  # too late: the interval was judged without it
    assert combiner.partials_late == 1 and store.slice_verdict("video", NOW_NS).intervals == 1


def test_a_report_of_another_partitioning_is_refused_and_counted():
    combiner = PartialsCombiner(WindowStore(default_policies()), 2)
    assert not combiner.add(partial(0, T0, T0, partitions=3), NOW_NS)
    assert combiner.reports_refused == 1 and combiner.waiting() == 0
