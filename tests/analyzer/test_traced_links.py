"""Traces as named nodes and links (analyzer.traced_links): consecutive answering hops linked
from the source, sites where the mapping knows the address, silent hops counted on the link,
one node per run of one name."""

from __future__ import annotations

from dataclasses import replace

from analyzer.traced_links import by_canonical_address, hop_names, traced_route
from tests.analyzer_support import observation, window

NAMES = by_canonical_address({"fd00::5": "cnty1a", "fd00:0:0:0::a": "city1a", "fd00::b": "city1a"})
R1, R2, T = "2001:db8::1", "2001:db8::2", "2001:db8:9::1"


def links_of(hops, reached: bool = True) -> list[tuple[str, str, int]]:
    """The links of a trace from cnty1a with no address-to-site mapping: hops stay addresses."""
    return list(traced_route(replace(observation(hops=tuple(hops)), reached=reached), {}).links())


def test_consecutive_answering_hops_make_links_starting_at_the_site():
    assert links_of([R1, R2, T]) == [("cnty1a", R1, 0), (R1, R2, 0), (R2, T, 0)]


def test_silent_hops_are_counted_on_the_link_they_hide_not_made_into_nodes():
    assert links_of([None, R1, None, None, T]) == [("cnty1a", R1, 1), (R1, T, 2)]


def test_a_hop_answering_twice_in_a_row_is_one_node_and_trailing_stars_make_no_link():
    assert links_of([R1, R1, R2, None, None], reached=False) == [("cnty1a", R1, 0), (R1, R2, 0)]


def test_hops_are_named_after_sites_and_stay_addresses_where_no_site_is_known():
    traced = observation(source="fd00::5", hops=("fd00::a", None, "fd00::c", "fd00:0::1"))
    route = traced_route(traced, NAMES)
    assert route.nodes == ("cnty1a", "city1a", "fd00::c", "fd00::1")  # the agent's address is its site
    assert list(route.links()) == [("cnty1a", "city1a", 0), ("city1a", "fd00::c", 1), ("fd00::c", "fd00::1", 0)]


def test_a_name_seen_twice_in_a_row_is_one_node():
    # city1a's two routers, and a hop answering twice (rate limits): one node each
    traced = observation(hops=("fd00::a", None, "fd00::b", "fd00::c", "fd00::c", "fd00::1"))
    assert traced_route(traced, NAMES).nodes == ("cnty1a", "city1a", "fd00::c", "fd00::1")
    assert traced_route(traced, {}).nodes == ("cnty1a", "fd00::a", "fd00::b", "fd00::c", "fd00::1")


def test_targets_probed_under_an_agents_site_name_are_that_site_and_the_declared_names_win():
    windows = [window(1, target="cnty2a"), window(1, target="core")]  # both at fd00::1
    assert hop_names({}, windows[:1], {"cnty1a", "cnty2a"}) == {"fd00::1": "cnty2a"}
    assert hop_names({}, windows[1:], {"cnty1a", "cnty2a"}) == {}  # core runs no agent
    assert hop_names({"fd00::1": "prov1"}, windows, {"cnty2a"}) == {"fd00::1": "prov1"}
