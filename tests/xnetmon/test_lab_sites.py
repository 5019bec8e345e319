"""A lab topology translated for the analyzer: address -> site, from a file or a built-in name."""

from __future__ import annotations

import pytest

from lab.topology import load
from xnetmon.lab_sites import declared_topology, load_sites_by_address, sites_by_address

SMALL = load("small")


def test_every_address_of_a_site_names_it():
    sites = sites_by_address(SMALL)
    assert sites[SMALL.loopback("core")] == "core"
    assert sites[SMALL.host_address("cnty1a")] == "cnty1a"
    # Both ends of a link: a traced hop is the interface that answered.
    assert sites[SMALL.link_address("prov1-city1a", "prov1")] == "prov1"
    assert sites[SMALL.link_address("prov1-city1a", "city1a")] == "city1a"
    assert len(sites) == 2 * len(SMALL.sites) + 2 * len(SMALL.links)


def test_declared_topology_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "net.yaml"
    bad.write_text("name: x\nsites: []\n")
    with pytest.raises(ValueError, match=r"net\.yaml"):
        load_sites_by_address(str(bad))
    assert load_sites_by_address("small")[SMALL.loopback("prov2")] == "prov2"


def test_the_declared_topology_has_every_site_with_its_role_and_every_link():
    declared = declared_topology(SMALL)
    assert dict(declared.roles) == {site.name: site.role.value for site in SMALL.sites}
    assert dict(declared.roles)["cnty2b"] == "county"
    assert declared.links == tuple((link.a, link.b, link.cost) for link in SMALL.links)
