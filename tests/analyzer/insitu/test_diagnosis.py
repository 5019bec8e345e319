"""Hints from segments: a losing link or node named directly, with its slice and evidence
that says it is in-situ; nothing from segments that lose nothing or only long ago."""

from __future__ import annotations

from analyzer.insitu.diagnosis import segment_diagnoses
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
