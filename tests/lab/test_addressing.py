"""The lab's address plan: blocks carved from one /48, addresses per site and link, and the
plans it refuses."""

from __future__ import annotations

import pytest

from lab.addressing import AddressPlan, AddressPlanError

PREFIX = "fd78:6e6d:7400::/48"


def test_the_default_blocks_are_the_first_three_52s():
    plan = AddressPlan.build(PREFIX, site_count=3, link_count=2)
    assert [str(b) for b in (plan.loopbacks, plan.links, plan.hosts)] == [
        "fd78:6e6d:7400::/52",
        "fd78:6e6d:7400:1000::/52",
        "fd78:6e6d:7400:2000::/52",
    ]


def test_sites_and_links_get_their_addresses_from_the_blocks():
    plan = AddressPlan.build(PREFIX, site_count=3, link_count=2)
    assert str(plan.loopback(0)) == "fd78:6e6d:7400::1"  # ::0 is the subnet-router anycast address
    assert str(plan.loopback(2)) == "fd78:6e6d:7400::3"
    assert str(plan.host_prefix(1)) == "fd78:6e6d:7400:2001::/64"
    assert str(plan.host_address(1)) == "fd78:6e6d:7400:2001::1"
    assert str(plan.link_prefix(1)) == "fd78:6e6d:7400:1001::/64"
    assert [str(plan.link_address(1, end)) for end in (1, 2)] == ["fd78:6e6d:7400:1001::1", "fd78:6e6d:7400:1001::2"]
    assert plan.contains("fd78:6e6d:7400:2001::1") and not plan.contains("fd78:6e6d:7401::1")
    with pytest.raises(AddressPlanError, match="two ends"):
        plan.link_address(0, 3)


def test_a_topology_may_place_its_blocks_itself():
    plan = AddressPlan.build(
        "2001:db8:5::/48",
        2,
        1,
        loopbacks="2001:db8:5:ff00::/64",
        links="2001:db8:5:100::/56",
        hosts="2001:db8:5:200::/56",
    )
    assert str(plan.loopback(1)) == "2001:db8:5:ff00::2"
    assert str(plan.link_prefix(0)) == "2001:db8:5:100::/64"


@pytest.mark.parametrize(
    "prefix, options, error",
    [
        ("fd78:6e6d:7400::/56", {}, "must be a /48"),
        ("2001:4860::/48", {}, "neither ULA"),
        ("10.0.0.0/8", {}, "is not IPv6"),
        ("fd78:6e6d:7400::1/48", {}, "host bits set"),
        ("fd78::/not", {}, "is not an IPv6 prefix"),
        (PREFIX, {"links": "fd78:6e6d:7401::/52"}, "lies outside the lab prefix"),
        (PREFIX, {"hosts": "fd78:6e6d:7400::/52"}, "overlaps"),
        (PREFIX, {"loopbacks": "fd78:6e6d:7400:3000::/126"}, "must be a /64 or shorter"),
        (PREFIX, {"hosts": "fd78:6e6d:7400:2000::/63"}, "has room for 2, the topology needs 3"),
    ],
)
def test_plans_that_cannot_work_are_refused_with_the_reason(prefix, options, error):
    with pytest.raises(AddressPlanError, match=error):
        AddressPlan.build(prefix, site_count=3, link_count=2, **options)
