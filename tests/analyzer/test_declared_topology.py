"""analyzer.declared_topology: roles and links as the deployment declares them, checked at the edge."""

from __future__ import annotations

import pytest

from analyzer.declared_topology import ROLES, DeclaredTopology


def test_a_consistent_declaration_is_kept_as_given():
    declared = DeclaredTopology(roles=(("core", "core"), ("p1", "province")), links=(("core", "p1", 10),))
    assert declared.links == (("core", "p1", 10),)
    assert ROLES[0] == "core"


def test_an_unknown_role_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown site role\(s\) \['hub'\] \(roles are: core, province"):
        DeclaredTopology(roles=(("x", "hub"),), links=())


def test_a_link_to_an_undeclared_site_is_refused_naming_it():
    with pytest.raises(ValueError, match=r"undeclared site\(s\) \['ghost'\]"):
        DeclaredTopology(roles=(("core", "core"),), links=(("core", "ghost", 10),))
