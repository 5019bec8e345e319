"""GET /map (analyzer.api.routes.extranet_map): the declared sites and links merged with the
traced ones, one undirected link per physical link with every path crossing it either way."""

from __future__ import annotations

from analyzer.declared_topology import DeclaredTopology
from lab.topology import load
from tests.analyzer_support import T0, batch, observation, window
from tests.api_support import Api
from xnetmon.lab_sites import declared_topology, sites_by_address

SMALL = load("small")
UP = (
    SMALL.link_address("city1a-cnty1a", "city1a"),
    SMALL.link_address("prov1-city1a", "prov1"),
    SMALL.link_address("core-prov1", "core"),
)
DOWN = (
    SMALL.link_address("core-prov1", "prov1"),
    SMALL.link_address("prov1-city1a", "city1a"),
    SMALL.link_address("city1a-cnty1a", "cnty1a"),
)


def traced_small_lab_api() -> Api:
    api = Api(site_names=sites_by_address(SMALL), declared_topology=declared_topology(SMALL))
    api.ship(batch(window(T0), observations=(observation(hops=UP),)))
    api.ship(
        batch(
            window(T0, source="core", target="cnty1a"),
            site="core",
            observations=(observation(SMALL.host_address("core"), "cnty1a", hops=DOWN),),
        )
    )
    return api


def test_every_declared_site_and_link_is_on_the_map_with_its_role():
    answer = traced_small_lab_api().get("/map").json()
    roles = {n["id"]: n["role"] for n in answer["nodes"]}
    assert roles == {site.name: site.role.value for site in SMALL.sites}
    assert {(link["a"], link["b"]) for link in answer["links"]} == {tuple(sorted(link.ends)) for link in SMALL.links}


def test_a_traced_link_carries_the_paths_over_it_both_ways_named_as_sites_and_an_untraced_one_none():
    # core traces from its host address: the path is still core's
    links = {(link["a"], link["b"]): link for link in traced_small_lab_api().get("/map").json()["links"]}
    crossing = links[("city1a", "cnty1a")]
    assert crossing["declared"] is True and crossing["cost"] == SMALL.link("city1a-cnty1a").cost
    assert sorted((p["source"], p["target"]) for p in crossing["paths"]) == [("cnty1a", "core"), ("core", "cnty1a")]
    assert links[("prov1", "prov2")]["paths"] == []
    nodes = {n["id"]: n for n in traced_small_lab_api().get("/map").json()["nodes"]}
    assert nodes["prov1"]["traced"] is True and nodes["prov2"]["traced"] is False


def test_without_a_declaration_the_map_is_what_the_traces_show():
    api = Api()
    api.ship(batch(window(T0), observations=(observation(hops=("fd00::a", "fd00::1")),)))
    answer = api.get("/map").json()
    assert {(n["id"], n["role"], n["declared"]) for n in answer["nodes"]} == {
        ("cnty1a", "site", False),
        ("fd00::a", "router", False),
        ("fd00::1", "target", False),
    }
    assert [(link["a"], link["b"], link["declared"]) for link in answer["links"]] == [
        ("cnty1a", "fd00::a", False),
        ("fd00::1", "fd00::a", False),
    ]


def test_a_traced_hop_outside_the_declaration_joins_it():
    declared = DeclaredTopology(roles=(("cnty1a", "county"),), links=())
    api = Api(declared_topology=declared)
    api.ship(batch(window(T0), observations=(observation(hops=("fd00::a", "fd00::1")),)))
    nodes = {n["id"]: (n["role"], n["declared"], n["traced"]) for n in api.get("/map").json()["nodes"]}
    assert nodes["cnty1a"] == ("county", True, True)
    assert nodes["fd00::a"] == ("router", False, True)


def test_each_traced_path_comes_with_its_hops_and_silent_ones_as_stars():
    routes = traced_small_lab_api().get("/map").json()["routes"]
    assert {(r["source"], r["target"]): r["hops"] for r in routes} == {
        ("cnty1a", "core"): ["cnty1a", "city1a", "prov1", "core"],
        ("core", "cnty1a"): ["core", "prov1", "city1a", "cnty1a"],
    }


def test_silent_hops_between_declared_sites_draw_no_link_the_declaration_lacks():
    api = Api(site_names=sites_by_address(SMALL), declared_topology=declared_topology(SMALL))
    api.ship(batch(window(T0), observations=(observation(hops=(UP[0], None, UP[2])),)))
    answer = api.get("/map").json()
    assert ("city1a", "core") not in {(link["a"], link["b"]) for link in answer["links"]}
    assert answer["routes"][0]["hops"] == ["cnty1a", "city1a", "*", "core"]
