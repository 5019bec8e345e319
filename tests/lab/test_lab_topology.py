"""Topology files, the address plan and routing: pure code, no root needed."""

from __future__ import annotations

import itertools

import pytest
import yaml
from netaddr import IPAddress, IPNetwork

from collector.contract.slice_catalog import DEFAULT_SLICES
from lab import faults, qos, routing
from lab.state import Fault, LabState
from lab.topology import TopologyError, builtin_names, load, parse

TINY = """
name: t
addressing: {prefix: "fd00:1:2::/48"}
sites:
  - {name: a, role: core}
  - {name: b, role: province}
  - {name: c, role: city}
links:
  - {a: a, b: b, cost: 10}
  - {a: b, b: c}
slices:
  - {name: video, dscp: 34, id: 1, share: 30}
  - {name: best-effort, dscp: 0, id: 4, share: 20}
"""


def variant(**changes) -> str:
    data = yaml.safe_load(TINY)
    for key, value in changes.items():
        data[key] = value
    return yaml.safe_dump(data)


def test_builtin_topologies_load():
    assert {"tiny", "small"} <= set(builtin_names())
    tiny, small = load("tiny"), load("small")
    assert [s.name for s in tiny.sites] == ["r1", "r2", "r3"]
    roles = [s.role.value for s in small.sites]
    assert roles.count("core") == 1 and roles.count("province") == 2
    assert roles.count("city") == 4 and roles.count("county") == 4


@pytest.mark.parametrize("name", ["tiny", "small"])
def test_builtin_slices_are_the_project_defaults(name):
    topology = load(name)
    assert [(s.name, s.dscp, s.slice_id) for s in topology.slices] == [
        (s.name, s.dscp, s.slice_id) for s in DEFAULT_SLICES
    ]


def test_small_is_dual_homed_above_county_level():
    small = load("small")
    for site in small.sites:
        degree = len(small.links_of(site.name))
        if site.role.value == "county":
            assert degree == 1
        else:
            assert degree >= 2, site.name


@pytest.mark.parametrize("name", ["tiny", "small"])
def test_address_plan_is_unique_and_inside_the_prefix(name):
    topology = load(name)
    plan = topology.plan
    addresses = [topology.loopback(s.name) for s in topology.sites]
    addresses += [topology.host_address(s.name) for s in topology.sites]
    addresses += [topology.link_address(link.name, end) for link in topology.links for end in link.ends]
    assert len(set(addresses)) == len(addresses)
    assert all(IPAddress(a) in plan.prefix for a in addresses)
    networks = [IPNetwork(topology.link_prefix(link.name)) for link in topology.links]
    networks += [IPNetwork(topology.host_prefix(s.name)) for s in topology.sites]
    networks += [IPNetwork(topology.loopback(s.name) + "/128") for s in topology.sites]
    for x, y in itertools.combinations(networks, 2):
        assert x not in y and y not in x, (x, y)
    for link in topology.links:
        prefix = IPNetwork(topology.link_prefix(link.name))
        assert prefix.prefixlen == 64
        assert all(IPAddress(topology.link_address(link.name, end)) in prefix for end in link.ends)
    assert all(topology.site_of_address(topology.loopback(s.name)) == s.name for s in topology.sites)


def test_interfaces_fit_linux_names():
    for link in load("small").links:
        for end in link.ends:
            assert len(link.interface(end)) <= 15


@pytest.mark.parametrize(
    "text, message",
    [
        (TINY.replace("{a: b, b: c}", "{a: b, b: zz}"), "links[1].b: unknown site 'zz'"),
        (TINY.replace("share: 30", "share: 90"), "shares add up to 110%"),
        (
            TINY.replace('{prefix: "fd00:1:2::/48"}', '{prefix: "fd00:1:2::/48", links: "fd00:1:2::/56"}'),
            "overlaps links block fd00:1:2::/56",
        ),
        (
            TINY.replace('{prefix: "fd00:1:2::/48"}', '{prefix: "fd00:1:2::/48", hosts: "fd00:9::/56"}'),
            "outside the lab prefix",
        ),
        (TINY.replace("fd00:1:2::/48", "2a00:1::/48"), "neither ULA"),
        (TINY.replace("fd00:1:2::/48", "fd00:1:2::/56"), "must be a /48"),
        (TINY.replace("{a: b, b: c}", "{a: b, b: a}"), "a second link between 'b' and 'a'"),
        (TINY.replace("{a: b, b: c}", "{a: c, b: c}"), "two different sites"),
        (TINY.replace("{name: c, role: city}", "{name: c-1, role: city}"), "sites[2].name: site name 'c-1' must be"),
        (TINY.replace("role: city", "role: village"), "sites[2].role: expected 'core', 'province', 'city' or"),
        (TINY.replace("dscp: 0", "dscp: 10"), "one slice must have dscp 0"),
        (TINY.replace("dscp: 0, id: 4", "dscp: 34, id: 4"), "slices (dscp): 34 appears twice"),
        (TINY.replace("cost: 10", "cost: 0"), "links[0].cost: expected greater than or equal to 1, got 0"),
        (TINY + "colour: blue\n", "colour: unknown key 'colour' (keys here are: name,"),
        ("- just\n- a list\n", "expected a mapping"),
        ("name: [unclosed", "invalid YAML"),
        ("name: " + "[" * 5000, "invalid YAML: nested too deeply"),
    ],
)
def test_bad_topologies_are_refused_with_a_message_naming_the_problem(text, message):
    with pytest.raises(TopologyError) as caught:
        parse(text, "bad.yaml")
    assert str(caught.value).startswith("bad.yaml:")
    assert message in str(caught.value)


def test_unknown_topology_lists_the_builtin_ones():
    with pytest.raises(TopologyError, match=r"built-in ones are .*small.*tiny"):
        load("huge")
    with pytest.raises(TopologyError, match="cannot read"):
        load("/nonexistent/topology.yaml")


def test_shortest_paths_follow_costs_and_avoid_down_links():
    small = load("small")
    assert routing.path(small, "cnty1a", "cnty2b") == ("cnty1a", "city1a", "prov1", "core", "prov2", "city2b", "cnty2b")
    # Without core-prov1 the province link (30) beats the city backups (40).
    around = routing.path(small, "cnty1a", "cnty2b", down_links=frozenset({"core-prov1"}))
    assert around == ("cnty1a", "city1a", "prov1", "city2b", "cnty2b")
    assert routing.path(small, "cnty1a", "core", down_links=frozenset({"city1a-cnty1a"})) is None
    assert routing.path(small, "city1a", "core", down_sites=frozenset({"prov1"})) == ("city1a", "prov2", "core")


def test_routes_cover_every_other_site_and_link():
    small = load("small")
    table = routing.routes(small)
    for site in small.sites:
        prefixes = {r.prefix for r in table[site.name]}
        for other in small.sites:
            if other.name != site.name:
                assert small.loopback(other.name) + "/128" in prefixes
                assert small.host_prefix(other.name) in prefixes
        attached = {small.link_prefix(link.name) for link in small.links_of(site.name)}
        assert {small.link_prefix(link.name) for link in small.links} - attached <= prefixes
        assert all(r.source == small.loopback(site.name) for r in table[site.name])


def test_alternate_path_differs_and_honours_via():
    small = load("small")
    primary = routing.path(small, "cnty1a", "cnty2b")
    alternate = routing.alternate_path(small, "cnty1a", "cnty2b")
    assert alternate and alternate != primary and alternate[0] == "cnty1a" and alternate[-1] == "cnty2b"
    assert routing.alternate_path(small, "city2a", "core", via="prov1") == ("city2a", "prov1", "core")
    # Through prov2 is what routing does already: not an alternate.
    assert routing.alternate_path(small, "city1a", "city2a", via="prov2") is None
    assert routing.alternate_path(load("tiny"), "r1", "r3") is None


def test_queue_settings_combine_the_active_faults_per_direction():
    small = load("small")
    link = small.link("prov1-city1a")
    congest = Fault(
        "congest-1", "congest", "t", {"link": link.name, "senders": ["prov1"], "rate_mbit": 2, "queue_ms": 50}, ""
    )
    starve = Fault(
        "slice-starve-2",
        "slice-starve",
        "t",
        {"link": link.name, "senders": ["prov1", "city1a"], "slice": "video", "rate_kbit": 8},
        "",
    )
    state = LabState("small", "", faults=[congest, starve])
    assert faults.end_settings(small, state, link, "prov1") == qos.EndSettings(2000, 50, (("video", 8),))
    assert faults.end_settings(small, state, link, "city1a") == qos.EndSettings(100_000, None, (("video", 8),))
    state.faults.remove(congest)  # healing one keeps the other
    assert faults.end_settings(small, state, link, "prov1") == qos.EndSettings(100_000, None, (("video", 8),))
    lines = qos.rebuild_lines(small, link, "prov1", faults.end_settings(small, state, link, "prov1"))
    assert "class add dev to-city1a parent 1:1 classid 1:11 htb rate 8kbit ceil 8kbit quantum 1514" in lines
    assert "class add dev to-city1a parent 1:1 classid 1:12 htb rate 30000kbit ceil 100000kbit quantum 1514" in lines


def test_htb_tree_has_a_class_and_filter_per_slice():
    tiny = load("tiny")
    lines = qos.setup_lines(tiny, tiny.link("r1-r2"), "r1")
    assert lines[0] == "qdisc add dev to-r2 root handle 1: htb default 14"
    assert "filter add dev to-r2 parent 1: protocol ipv6 prio 1 u32 match ip6 priority 0x88 0xfc flowid 1:11" in lines
    assert sum(line.startswith("class add") for line in lines) == 5  # the link + 4 slices
    assert not any("priority 0x00" in line for line in lines)  # best effort is the default class


def test_fault_on_a_missing_link_is_refused_by_name():
    tiny = load("tiny")
    with pytest.raises(faults.FaultError, match=r"no link 'r1-r3' .*links are: r1-r2, r2-r3"):
        faults.directions(tiny, "r1-r3", None)
    with pytest.raises(faults.FaultError, match="'r3' is not an end of link r1-r2"):
        faults.directions(tiny, "r2-r1", "r3")
    assert [d.sender for d in faults.directions(tiny, "r2-r1", "r2")] == ["r2"]
