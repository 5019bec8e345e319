"""Bring-up pieces on the `small` lab: router sysctls, routes that are exactly the routing
table, route replacement that leaves other routes alone, and links waited for until up."""

from __future__ import annotations

import pytest

from lab import build, routing
from lab.errors import LabError

pytestmark = [pytest.mark.root, pytest.mark.lab]


def lab_routes(lab, site: str) -> set[tuple[str, str, str]]:
    """(prefix, next hop, device) of the routes the lab installed in a site."""
    shown = lab.exec(site, ["ip", "-6", "route", "show", "proto", build.ROUTE_PROTO], check=True).stdout
    found = set()
    for line in shown.splitlines():
        words = line.split()
        prefix = words[0] if "/" in words[0] else f"{words[0]}/128"  # ip shows host routes bare
        found.add((prefix, words[words.index("via") + 1], words[words.index("dev") + 1]))
    return found


def expected_routes(lab, site: str, down_links=frozenset()) -> set[tuple[str, str, str]]:
    table = routing.routes(lab.topology, frozenset(down_links), frozenset())
    return {(r.prefix, r.next_hop, r.interface) for r in table[site]}


def test_batch_input_is_one_line_per_command():
    assert build.batch(["link set lo up", "addr add ::1/128 dev lo"]) == "link set lo up\naddr add ::1/128 dev lo\n"
    assert build.batch([]) == ""


def test_every_site_is_a_router_without_duplicate_address_detection(lab):
    for site in ("core", "cnty1a"):
        shown = lab.exec(
            site,
            ["sysctl", "-n", "net.ipv6.conf.all.forwarding", "net.ipv6.conf.all.accept_dad", "net.ipv6.icmp.ratelimit"],
            check=True,
        ).stdout.split()
        assert shown == ["1", "0", "0"], site


def test_the_installed_routes_are_the_routing_table(lab):
    for site in ("cnty1a", "prov2"):
        assert lab_routes(lab, site) == expected_routes(lab, site)


def test_new_routes_replace_exactly_the_labs_own(lab):
    site, link = "city1a", "core-prov1"
    peer = lab.topology.link_between("city1a", "prov1")
    foreign = [
        "ip",
        "-6",
        "route",
        "add",
        "2001:db8:77::/64",
        "via",
        lab.link_address(peer.name, "prov1"),
        "dev",
        lab.interface(peer.name, site),
    ]
    lab.exec(site, foreign, check=True)
    try:
        build.install_routes(lab, frozenset({link}), frozenset())
        assert lab_routes(lab, site) == expected_routes(lab, site, {link}) != expected_routes(lab, site)
        assert "2001:db8:77::/64" in lab.exec(site, ["ip", "-6", "route", "show", "2001:db8:77::/64"]).stdout
    finally:
        build.install_routes(lab, frozenset(), frozenset())
        lab.exec(site, ["ip", "-6", "route", "del", "2001:db8:77::/64"])
    assert lab_routes(lab, site) == expected_routes(lab, site)


def test_a_link_that_stays_down_is_named_and_set_links_brings_it_back(lab, monkeypatch):
    link = "city2b-cnty2b"
    device = lab.interface(link, "cnty2b")
    lab.exec("cnty2b", ["ip", "link", "set", device, "down"], check=True)
    monkeypatch.setattr(build, "LINK_UP_TIMEOUT", 0.3)
    try:
        with pytest.raises(LabError, match=f"links not up after 0.3 s: {device}@cnty2b"):
            build.wait_links_up(lab, {(link, "cnty2b")})
    finally:
        build.set_links(lab, lab.state())  # no fault is active: every link up, waited for
        build.install_routes(lab, frozenset(), frozenset())  # the kernel dropped the routes over the down link
    build.wait_links_up(lab, {(link, "cnty2b"), (link, "city2b")})
    assert lab_routes(lab, "cnty2b") == expected_routes(lab, "cnty2b")
