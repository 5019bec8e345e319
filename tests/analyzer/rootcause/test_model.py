"""The inference contract's own behaviour: link names and a path's loss ratio."""

from __future__ import annotations

from analyzer.rootcause.model import HINT_KINDS, PathEvidence, link_name


def evidence(sent: int, lost: int) -> PathEvidence:
    return PathEvidence(
        path_id="a>b/video/stamp",
        source="a",
        target="b",
        target_site="b",
        slice="video",
        forward=("host:a", "a", link_name("a", "b"), "b", "service:b"),
        reverse=("b", link_name("b", "a"), "a"),
        sent=sent,
        lost=lost,
    )


def test_a_link_is_named_the_way_packets_crossed_it():
    assert (link_name("a", "b"), link_name("b", "a")) == ("a>b", "b>a")


def test_loss_is_lost_over_sent_and_nothing_sent_is_no_loss():
    assert evidence(200, 3).loss == 0.015
    assert evidence(0, 0).loss == 0.0


def test_hint_kinds_are_unique_and_name_the_pseudo_component_kinds():
    assert len(set(HINT_KINDS)) == len(HINT_KINDS)
    assert {"probe-host", "reflector-down"} <= set(HINT_KINDS)
