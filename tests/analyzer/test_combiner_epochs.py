"""The combiner's epochs: the union fills a path's reverse route and its target's site from
another partition's paths; an interval's epoch completes once every partition sent it or a
later one, or after the grace, in order, a late one dropped and counted; the engine runs on a
thread of its own over the newest complete epoch, skipping older ones while it is busy."""

from __future__ import annotations

import threading

import pytest

from analyzer.combiner_epochs import CombinedInference, EpochAssembler, route_of, union_epoch
from analyzer.partial_evidence import PartitionEvidence
from analyzer.partials import MalformedReport
from analyzer.rootcause.engine import diagnose
from analyzer.rootcause.model import Epoch, HostHealth, PathEvidence
from tests.support import wait_until

W = 10_000_000_000
AT = 170_000_005 * W
NOW = AT + W


def path(source: str, target: str, nodes: tuple[str, ...], *, reverse=None, target_site=None, lost=0, slice_="video"):
    parts = [nodes[0]]
    for a, b in zip(nodes, nodes[1:]):
        parts += [f"{a}>{b}", b]
    return PathEvidence(
        f"{source}>{target}/{slice_}/stamp",
        source,
        target,
        target_site,
        slice_,
        (f"host:{source}", *parts, f"service:{target}"),
        reverse,
        sent=100,
        lost=lost,
    )


# cnty1a in partition 0, core in partition 1: each knows its own traces only
UP = ("cnty1a", "city1a", "prov1", "core")
DOWN = ("core", "prov1", "city1a", "cnty1a")
CNTY = Epoch((path("cnty1a", "core", UP, target_site="core"),), (HostHealth("cnty1a", True),), AT)
CORE = Epoch((path("core", "cnty1a", DOWN),), (HostHealth("core", True),), AT)


def evidence(epoch: Epoch, partition: int, partitions: int = 2, at_ns: int = AT) -> PartitionEvidence:
    return PartitionEvidence.of(Epoch(epoch.paths, epoch.hosts, at_ns), partition, partitions, W)


def test_the_union_fills_reverse_routes_and_target_sites_from_the_other_partitions_paths():
    union = union_epoch([CORE, CNTY], AT)
    paths = {p.path_id: p for p in union.paths}
    up, down = paths["cnty1a>core/video/stamp"], paths["core>cnty1a/video/stamp"]
    assert (
        up.reverse
        == route_of(CORE.paths[0].forward)
        == (
            "core",
            "core>prov1",
            "prov1",
            "prov1>city1a",
            "city1a",
            "city1a>cnty1a",
            "cnty1a",
        )
    )
    assert down.target_site == "cnty1a"  # an agent's site, known to the other partition only
    assert down.reverse == route_of(CNTY.paths[0].forward)
    assert [p.path_id for p in union.paths] == sorted(paths) and [h.site for h in union.hosts] == ["cnty1a", "core"]
    # a route of another slice is not this slice's way back; a reverse the partition knew is kept
    other = Epoch((path("core", "cnty1a", DOWN, slice_="egov"),), (), AT)
    assert union_epoch([CNTY, other], AT).paths[1].reverse is None
    known = Epoch((path("cnty1a", "core", UP, target_site="core", reverse=("core", "core>x", "x")),), (), AT)
    assert union_epoch([known, CORE], AT).paths[0].reverse == ("core", "core>x", "x")


def test_an_epoch_completes_once_every_partition_sent_it_or_a_later_one():
    assembler = EpochAssembler(2, W)
    assert assembler.add(evidence(CNTY, 0), NOW) == [] and assembler.waiting() == 1
    (done,) = assembler.add(evidence(CORE, 1), NOW)
    assert done.at_ns == AT and done.epoch() == union_epoch([CNTY, CORE], AT)
    # partition 1 skipped an interval (its runner took the newest closed one): its later epoch says so
    assembler.add(evidence(CNTY, 0, at_ns=AT + W), NOW)
    assert assembler.add(evidence(CORE, 1, at_ns=AT + 2 * W), NOW)[0].at_ns == AT + W
    assert assembler.add(evidence(CNTY, 0, at_ns=AT), NOW) == [] and assembler.late == 1
    assert assembler.by_grace == 0


def test_a_silent_partition_costs_its_paths_after_the_grace_and_the_wait_is_bounded():
    assembler = EpochAssembler(2, W, grace_s=15.0, max_waiting=2)
    assembler.add(evidence(CNTY, 0), NOW)
    assert assembler.advance(NOW + 14 * 10**9) == []
    (done,) = assembler.advance(NOW + 15 * 10**9)
    assert [p.source for p in done.epoch().paths] == ["cnty1a"] and assembler.by_grace == 1
    for k in range(1, 4):
        done = assembler.add(evidence(CNTY, 0, at_ns=AT + k * W), NOW)
    assert [e.at_ns for e in done] == [AT + W] and assembler.waiting() == 2


def test_evidence_of_another_partitioning_is_refused():
    assembler = EpochAssembler(2, W)
    with pytest.raises(MalformedReport, match="of 3"):
        assembler.add(evidence(CNTY, 0, partitions=3), NOW)
    with pytest.raises(MalformedReport, match="not of 2"):
        assembler.add(PartitionEvidence.of(CNTY, 0, 2, 2 * W), NOW)
    assert assembler.refused == 2 and assembler.waiting() == 0


def test_the_engine_runs_over_the_union_and_skips_older_epochs_while_busy():
    lossy = Epoch((path("cnty1a", "core", UP, target_site="core", lost=100),), CNTY.hosts, AT)
    inference = CombinedInference(EpochAssembler(2, W))
    try:
        for k in range(2):  # a hint shows once two epochs in a row inferred it
            inference.add(evidence(lossy, 0, at_ns=AT + k * W), NOW)
            inference.add(evidence(CORE, 1, at_ns=AT + k * W), NOW)
            wait_until(lambda inferred=k + 1: inference.epochs == inferred, what=f"epoch {k + 1} inferred")
        union = union_epoch([lossy, CORE], AT)
        assert inference.last_epoch.paths == union.paths and inference.last_epoch.at_ns == AT + W
        assert [(h.kind, h.suspects) for h in inference.hints()] == [(d.kind, d.suspects) for d in diagnose(union)]
        assert inference.hints()  # the dead path is explained
    finally:
        inference.stop()
    busy, seen = threading.Event(), []

    def slow(epoch):
        seen.append(epoch.at_ns)
        busy.wait(30)
        return []

    inference = CombinedInference(EpochAssembler(1, W), diagnose=slow)
    try:
        for k in range(4):
            inference.add(evidence(CNTY, 0, partitions=1, at_ns=AT + k * W), NOW)
            if k == 0:
                wait_until(lambda: seen == [AT], what="the engine busy with the first epoch")
        busy.set()
        wait_until(lambda: inference.epochs == 2, what="the newest epoch inferred")
        assert seen == [AT, AT + 3 * W] and inference.skipped == 2
    finally:
        busy.set()
        inference.stop()
