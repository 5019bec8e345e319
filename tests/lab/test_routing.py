"""Routing as a converged IGP leaves it, on the `small` and `tiny` topologies: shortest
paths, reroutes around down links and sites, alternates, and every site's static routes."""

from __future__ import annotations

import gc

from lab.routing import alternate_path, cost_of, path, path_links, routes, shortest_paths
from lab.topology import load

TINY = load("tiny")
SMALL = load("small")


def test_a_line_of_routers_has_one_path_and_a_down_link_blackholes_it():
    assert path(TINY, "r1", "r3") == ("r1", "r2", "r3")
    assert path(TINY, "r1", "r3", down_links=frozenset({path_links(TINY, ("r2", "r3"))[0]})) is None
    assert shortest_paths(TINY, "r2", down_sites=frozenset({"r2"})) == {"r2": ("r2",)}
    assert alternate_path(TINY, "r1", "r3") is None  # nowhere to go


def test_paths_are_shortest_by_cost_and_the_same_every_time():
    for source in (s.name for s in SMALL.sites):
        paths = shortest_paths(SMALL, source)
        assert set(paths) == {s.name for s in SMALL.sites}
        for destination, hops in paths.items():
            assert hops[0] == source and hops[-1] == destination
            reverse = path(SMALL, destination, source)
            assert cost_of(SMALL, hops) == cost_of(SMALL, reverse)
    assert shortest_paths(SMALL, "cnty1a") == shortest_paths(SMALL, "cnty1a")


PRIMARY = ("cnty1a", "city1a", "prov1", "core", "prov2", "city2b", "cnty2b")  # 10 each: 60
BACKUP = ("cnty1a", "city1a", "prov1", "city2b", "cnty2b")  # through the cost-40 backup uplink: 70


def test_the_best_path_goes_through_the_core_and_a_down_link_takes_the_backup_uplink():
    assert path(SMALL, "cnty1a", "cnty2b") == PRIMARY and cost_of(SMALL, PRIMARY) == 60
    # cost 70 both ways round without core-prov1: fewer hops wins over prov1>prov2>city2b
    assert path(SMALL, "cnty1a", "cnty2b", down_links=frozenset({"core-prov1"})) == BACKUP
    assert path(SMALL, "cnty1a", "cnty2b", down_sites=frozenset({"core"})) == BACKUP
    assert path(SMALL, "cnty1a", "cnty2b", down_links=frozenset({"city1a-cnty1a"})) is None  # single-homed


def test_an_alternate_avoids_the_primary_or_goes_through_the_site_asked_for():
    assert alternate_path(SMALL, "cnty1a", "cnty2b") == BACKUP  # the county links cannot be avoided
    via = alternate_path(SMALL, "cnty1a", "cnty2b", via="city2a")
    assert via == ("cnty1a", "city1a", "prov1", "city2a", "prov2", "city2b", "cnty2b") and cost_of(SMALL, via) == 90
    assert alternate_path(SMALL, "cnty1a", "cnty2b", via="prov2") is None  # the primary already goes there


def test_every_site_routes_to_every_other_loopback_host_network_and_foreign_link():
    table = routes(TINY)
    r1 = {r.prefix: r for r in table["r1"]}
    assert set(r1) == {f"{TINY.loopback(s)}/128" for s in ("r2", "r3")} | {
        TINY.host_prefix(s) for s in ("r2", "r3")
    } | {TINY.link_prefix(path_links(TINY, ("r2", "r3"))[0])}
    to_r3 = r1[f"{TINY.loopback('r3')}/128"]
    first = TINY.link_between("r1", "r2")
    assert (to_r3.next_hop, to_r3.interface, to_r3.source) == (
        TINY.link_address(first.name, "r2"),
        first.interface("r1"),
        TINY.loopback("r1"),
    )


def test_a_down_site_gets_no_routes_and_nobody_routes_through_it():
    table = routes(TINY, down_sites=frozenset({"r2"}))
    assert table["r2"] == [] and table["r1"] == [] and table["r3"] == []


def test_computing_the_routes_leaves_no_garbage_for_the_cyclic_collector():
    """The soak's process computes them at every fault and heal; each time left ~9,000
    objects in reference cycles (netaddr trying IPv4 first), which piled up between the
    collector's rare full passes and read as memory growth."""
    topology = load("small")
    expected = routes(topology)
    gc.collect()
    gc.disable()
    try:
        for _ in range(3):
            assert routes(topology, frozenset(), frozenset()) == expected
        assert gc.collect() == 0
    finally:
        gc.enable()
