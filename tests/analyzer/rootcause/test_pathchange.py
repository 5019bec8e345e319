"""Path changes explained by what the rerouted paths left: links before nodes, classes of
components left by the same paths, unknown previous routes named by their sources."""

from __future__ import annotations

from dataclasses import replace

import pytest

from analyzer.rootcause.model import PathEvidence
from analyzer.rootcause.pathchange import path_change_diagnoses
from tests.analyzer.rootcause.engine_support import components


def moved(
    source: str,
    target: str,
    before: list[str] | None,
    after: list[str],
    *,
    slice_: str = "video",
    delta_s: float | None = None,
) -> PathEvidence:
    return PathEvidence(
        path_id=f"{source}>{target}/{slice_}",
        source=source,
        target=target,
        target_site=target,
        slice=slice_,
        forward=components(after),
        reverse=components(after[::-1]),
        sent=100,
        lost=0,
        path_changed=True,
        delay_delta_s=delta_s,
        previous_forward=components(before) if before else None,
        previous_reverse=components(before[::-1]) if before else None,
    )


def test_the_link_every_moved_path_left_is_the_explanation_not_the_rest_of_the_old_route():
    paths = (
        moved("a", "b", ["a", "r", "b"], ["a", "s", "b"], delta_s=0.004),
        moved("c", "b", ["c", "r", "b"], ["c", "s", "b"], slice_="egov", delta_s=0.002),
    )
    [only] = path_change_diagnoses(paths, set())  # not a>r or c>r (one path each), nor the node r
    assert only.kind == "path-change" and only.suspects == ("b>r", "r>b")
    assert only.slices == ("egov", "video")
    assert only.evidence == (
        "2 paths moved off b>r = r>b, RTT +3.0 ms (median)",
        "end-to-end probes cannot tell apart: b>r, r>b",
    )
    assert only.confidence == pytest.approx((1 - 0.5**2) * 0.8)


def test_nodes_are_named_only_for_changes_no_link_explains():
    rerouted = moved("a", "b", ["a", "x", "b"], ["a", "s", "b"])  # left x and its links
    # the links stayed, a node between them is gone (a middlebox taken out): only the node was left
    bypassed = replace(moved("c", "d", None, ["c", "d"]), previous_forward=("c", "c>d", "y", "d"))
    found = path_change_diagnoses((rerouted, bypassed), set())
    assert [d.suspects for d in found] == [("a>x", "b>x", "x>a", "x>b"), ("y",)]
    assert found[1].confidence == 0.5


def test_an_unchanged_direction_counts_as_its_own_previous_route():
    path = moved("a", "b", ["a", "r", "b"], ["a", "s", "b"])
    forward_only = replace(path, reverse=path.previous_reverse, previous_reverse=None)
    # r is still on the way back, so only the forward links were left
    assert [d.suspects for d in path_change_diagnoses((forward_only,), set())] == [("a>r", "r>b")]


def test_changes_without_a_previous_route_name_their_sources():
    paths = (moved("a", "b", None, ["a", "s", "b"]), moved("c", "b", None, ["c", "s", "b"], delta_s=-0.001))
    [diagnosis] = path_change_diagnoses(paths, set())
    assert diagnosis.suspects == ("a", "c") and diagnosis.confidence == 0.4
    assert diagnosis.evidence == ("2 paths from a = c changed route (previous route unknown), RTT -1.0 ms (median)",)


def test_paths_from_excluded_sites_and_unchanged_paths_explain_nothing():
    changed = moved("a", "b", ["a", "r", "b"], ["a", "s", "b"])
    still = replace(changed, path_changed=False)
    assert path_change_diagnoses((changed,), {"a"}) == []
    assert path_change_diagnoses((still,), set()) == []
