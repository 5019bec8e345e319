"""Traces as named nodes and links (analyzer.traced_links) and the topology made of them
(analyzer.traced_topology): sites where the mapping knows the address, silent hops counted on
the link, one node per run of one name, and the role a node keeps."""

from __future__ import annotations

from analyzer.traced_links import by_canonical_address, hop_names, traced_route
from analyzer.traced_topology import TracedLink, TracedTopology
from tests.analyzer_support import observation, window

NAMES = by_canonical_address({"fd00::5": "cnty1a", "fd00:0:0:0::a": "city1a", "fd00::b": "city1a"})


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


def test_the_traced_topology_names_links_as_the_route_does_and_a_site_stays_a_site():
    there = observation(source="fd00::5", target="cnty2a", hops=("fd00::a", None, "fd00::2"))
    back = observation(source="cnty2a", target="cnty1a", hops=("fd00::b", "fd00::5"))
    topology = TracedTopology.from_observations([there, back], {**NAMES, "fd00::2": "cnty2a"})
    assert topology.nodes == {"cnty1a": "site", "city1a": "router", "cnty2a": "site"}
    assert set(topology.links) == {TracedLink("cnty1a", "city1a", 0), TracedLink("city1a", "cnty2a", 1),
                                   TracedLink("cnty2a", "city1a", 0), TracedLink("city1a", "cnty1a", 0)}
    [use] = topology.links[TracedLink("cnty1a", "city1a", 0)]
    assert (use.source, use.target, use.fingerprint) == ("fd00::5", "cnty2a", there.fingerprint)
