"""Hints from segments: a losing link or node named directly, with its slice and evidence
that says it is in-situ; nothing from segments that lose nothing or only long ago."""

from __future__ import annotations

from dataclasses import replace

from analyzer.insitu.diagnosis import segment_diagnoses, significant
from analyzer.insitu.segments import SegmentStore
from tests.analyzer.insitu.insitu_support import path_blocks
from tests.analyzer_support import T0

S = 1_000_000_000


def test_a_losing_link_is_named_with_its_slice_and_in_situ_evidence():
    store = SegmentStore()
    store.add(path_blocks([[100, 100], [100, 98], [100, 98], [100, 98]]), T0)
    (diagnosis,) = segment_diagnoses(store, T0, 3 * S)
    assert (diagnosis.kind, diagnosis.suspects, diagnosis.slices) == ("link-loss", ("cnty1a>city1a",), ("video",))
    assert diagnosis.confidence == 0.95
    assert "in-situ" in diagnosis.evidence[0] and "2 of 200 marked packets" in diagnosis.evidence[0]


def test_a_node_that_loses_is_a_node_loss():
    store = SegmentStore()
    store.add(path_blocks([[100], [100], [90], [90]]), T0)
    (diagnosis,) = segment_diagnoses(store, T0, 3 * S)
    assert (diagnosis.kind, diagnosis.suspects) == ("node-loss", ("city1a",))


def test_no_loss_or_old_loss_gives_no_diagnosis():
    store = SegmentStore()
    store.add(path_blocks([[100], [100], [100], [100]]), T0)
    assert segment_diagnoses(store, T0, 3 * S) == []
    store.add(path_blocks([[100], [99], [99], [99]], flow=7), T0)
    assert segment_diagnoses(store, T0 + 10 * S, 3 * S) == []


def test_a_links_background_loss_is_not_a_fault_but_a_gray_loss_is():
    """10,000 marked packets a block: one lost is a healthy link's 0.01%; 20 lost is 0.2%."""
    store = SegmentStore()
    store.add(path_blocks([[10_000], [9_999], [9_999], [9_979]]), T0)
    (diagnosis,) = segment_diagnoses(store, T0, 3 * S)
    assert diagnosis.suspects == ("city1a>prov1",) and "20 of 9999 marked packets" in diagnosis.evidence[0]
    assert not significant(1, 10_000) and not significant(11, 10_000) and significant(12, 10_000)
    assert not significant(0, 100)  # and one alone is not enough: below


def test_a_loss_that_began_in_the_last_block_is_not_diluted_by_the_clean_ones_before():
    store = SegmentStore()
    store.add(path_blocks([[1000] * 3, [1000] * 3, [1000] * 3, [1000, 1000, 996]]), T0)
    assert not significant(4, 3000) and significant(4, 1000)
    (diagnosis,) = segment_diagnoses(store, T0, 3 * S)
    assert diagnosis.suspects == ("city1a>prov1",)


def test_a_loss_too_thin_for_any_one_block_shows_in_the_flows_newest_blocks_together():
    store = SegmentStore()
    store.add(path_blocks([[1000] * 6, [1000] * 6, [1000] * 6, [1000] * 3 + [998] * 3]), T0)
    assert not significant(2, 1000) and not significant(6, 6000) and significant(6, 3000)
    (diagnosis,) = segment_diagnoses(store, T0, 10 * S)
    assert diagnosis.suspects == ("city1a>prov1",)
    other_flow = SegmentStore()  # the same losses over two flows' blocks: no one flow lost lately enough
    other_flow.add(path_blocks([[1000] * 6, [1000] * 6, [1000] * 6, [1000] * 4 + [998] * 2]), T0)
    other_flow.add(path_blocks([[1000] * 6, [1000] * 6, [1000] * 6, [1000] * 5 + [998]], flow=7), T0)
    assert segment_diagnoses(other_flow, T0, 10 * S) == []


def test_missing_packets_of_a_block_a_capture_dropped_in_are_no_diagnosis():
    blocks = path_blocks([[1000] * 3, [1000, 900, 1000], [1000] * 3, [1000] * 3])
    unflagged = SegmentStore()
    unflagged.add(blocks, T0)
    assert [d.suspects for d in segment_diagnoses(unflagged, T0, 60 * S)] == [("cnty1a>city1a",)]
    dropping = ("city1a", "in", 1)  # city1a's capture dropped packets of block 1 arriving
    blocks = [replace(b, capture_dropped=(b.site, b.direction, b.sequence) == dropping) for b in blocks]
    store = SegmentStore()
    store.add(blocks, T0)
    assert segment_diagnoses(store, T0, 60 * S) == []
    assert store.totals()[("video", "cnty1a>city1a", "link")].unknown_blocks == 1


def test_one_lost_packet_names_no_link_however_small_the_block():
    assert not significant(1, 100) and significant(2, 100)  # 3 deviations at 100 packets allow 0.72
    store = SegmentStore()
    store.add(path_blocks([[100], [100], [99], [99]]), T0)
    assert segment_diagnoses(store, T0, 3 * S) == []
