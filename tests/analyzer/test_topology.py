"""The topology traced paths draw: links between answering hops, silent hops counted on
the link, node roles, and which paths use each link."""

from __future__ import annotations

from analyzer.topology import Link, PathUse, Topology, links_of
from collector.contract.records import FlowId, PathObservation

FLOW = FlowId("udp", 0x12345, 40000, 33434)
R1, R2, R3, T = "2001:db8::1", "2001:db8::2", "2001:db8::3", "2001:db8:9::1"


def seen(hops, source: str = "cnty1a", target: str = "core", slice_: str = "video", reached: bool = True):
    return PathObservation(source, target, slice_, FLOW, tuple(hops), reached, 1_700_000_000_000_000_000)


def test_consecutive_answering_hops_make_links_starting_at_the_site():
    assert links_of(seen([R1, R2, T])) == [("cnty1a", R1, 0), (R1, R2, 0), (R2, T, 0)]


def test_silent_hops_are_counted_on_the_link_they_hide_not_made_into_nodes():
    assert links_of(seen([None, R1, None, None, T])) == [("cnty1a", R1, 1), (R1, T, 2)]


def test_a_hop_answering_twice_in_a_row_is_one_node_and_trailing_stars_make_no_link():
    assert links_of(seen([R1, R1, R2, None, None], reached=False)) == [("cnty1a", R1, 0), (R1, R2, 0)]


def test_roles_site_router_and_target_only_for_a_reached_path():
    topology = Topology.from_observations([seen([R1, T]), seen([R1, R2], target="far", reached=False)])
    assert topology.nodes == {"cnty1a": "site", R1: "router", T: "target", R2: "router"}


def test_a_link_lists_every_path_that_uses_it_in_a_stable_order():
    b = seen([R1, R3], source="cnty2b", target="edge")
    a_video, a_egov = seen([R1, R2, T]), seen([R1, R2, T], slice_="egov")
    topology = Topology.from_observations([b, a_video, a_egov])
    shared = topology.links[Link("cnty1a", R1, 0)]
    assert [(u.source, u.slice) for u in shared] == [("cnty1a", "egov"), ("cnty1a", "video")]
    assert topology.links[Link(R1, R2, 0)][0] == PathUse("cnty1a", "core", "egov", a_egov.fingerprint)
    assert topology.links[Link(R1, R3, 0)] == [PathUse("cnty2b", "edge", "video", b.fingerprint)]


def test_links_are_directed_so_the_way_back_is_another_link():
    topology = Topology.from_observations([seen([R1, T], source=R3), seen([R1, R3], source=T, target=R3)])
    assert Link(R1, T, 0) in topology.links and Link(T, R1, 0) in topology.links
    assert len(topology.links) == 4
