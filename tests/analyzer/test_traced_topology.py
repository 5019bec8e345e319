"""The topology traced paths draw (analyzer.traced_topology): node roles and the role a site
keeps, which paths use each link, and links directed as the probes went. How a trace becomes
named links is analyzer.traced_links's, tested in test_traced_links.py."""

from __future__ import annotations

from analyzer.traced_links import by_canonical_address
from analyzer.traced_topology import PathUse, TracedLink, TracedTopology
from collector.contract.records import FlowId, PathObservation
from tests.analyzer_support import observation

FLOW = FlowId("udp", 0x12345, 40000, 33434)
R1, R2, R3, T = "2001:db8::1", "2001:db8::2", "2001:db8::3", "2001:db8:9::1"
NAMES = by_canonical_address({"fd00::5": "cnty1a", "fd00:0:0:0::a": "city1a", "fd00::b": "city1a"})


def seen(hops, source: str = "cnty1a", target: str = "core", slice_: str = "video", reached: bool = True):
    return PathObservation(source, target, slice_, FLOW, tuple(hops), reached, 1_700_000_000_000_000_000)


def test_roles_site_router_and_target_only_for_a_reached_path():
    topology = TracedTopology.from_observations([seen([R1, T]), seen([R1, R2], target="far", reached=False)])
    assert topology.nodes == {"cnty1a": "site", R1: "router", T: "target", R2: "router"}


def test_a_link_lists_every_path_that_uses_it_in_a_stable_order():
    b = seen([R1, R3], source="cnty2b", target="edge")
    a_video, a_egov = seen([R1, R2, T]), seen([R1, R2, T], slice_="egov")
    topology = TracedTopology.from_observations([b, a_video, a_egov])
    shared = topology.links[TracedLink("cnty1a", R1, 0)]
    assert [(u.source, u.slice) for u in shared] == [("cnty1a", "egov"), ("cnty1a", "video")]
    assert topology.links[TracedLink(R1, R2, 0)][0] == PathUse("cnty1a", "core", "egov", a_egov.fingerprint)
    assert topology.links[TracedLink(R1, R3, 0)] == [PathUse("cnty2b", "edge", "video", b.fingerprint)]


def test_links_are_directed_so_the_way_back_is_another_link():
    topology = TracedTopology.from_observations([seen([R1, T], source=R3), seen([R1, R3], source=T, target=R3)])
    assert TracedLink(R1, T, 0) in topology.links and TracedLink(T, R1, 0) in topology.links
    assert len(topology.links) == 4


def test_the_traced_topology_names_links_as_the_route_does_and_a_site_stays_a_site():
    there = observation(source="fd00::5", target="cnty2a", hops=("fd00::a", None, "fd00::2"))
    back = observation(source="cnty2a", target="cnty1a", hops=("fd00::b", "fd00::5"))
    topology = TracedTopology.from_observations([there, back], {**NAMES, "fd00::2": "cnty2a"})
    assert topology.nodes == {"cnty1a": "site", "city1a": "router", "cnty2a": "site"}
    assert set(topology.links) == {
        TracedLink("cnty1a", "city1a", 0),
        TracedLink("city1a", "cnty2a", 1),
        TracedLink("cnty2a", "city1a", 0),
        TracedLink("city1a", "cnty1a", 0),
    }
    [use] = topology.links[TracedLink("cnty1a", "city1a", 0)]
    assert (use.source, use.target, use.fingerprint) == ("fd00::5", "cnty2a", there.fingerprint)
