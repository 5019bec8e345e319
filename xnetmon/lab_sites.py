"""A lab topology as the analyzer reads it: address -> site, and sites' roles and links.

The analyzer knows no lab: root-cause evidence names traced hops through a plain mapping
(`RootCauseRunner(declared_names=...)`). The deployment wiring translates the lab's
topology into that mapping here, for `xnetmon analyzer --topology` and the all-in-one.
"""

from __future__ import annotations

import lab.topology
from analyzer.declared_topology import DeclaredTopology


def sites_by_address(topology: lab.topology.LabTopology) -> dict[str, str]:
    """Every site's loopback and host address and both ends of every link, so traced hops
    read as site names."""
    sites = {}
    for site in topology.sites:
        sites[topology.loopback(site.name)] = site.name
        sites[topology.host_address(site.name)] = site.name
    for link in topology.links:
        for end in link.ends:
            sites[topology.link_address(link.name, end)] = end
    return sites


def load_lab_topology(path: str) -> lab.topology.LabTopology:
    """A topology file in the lab's format (or a built-in lab topology's name). Raises
    ValueError (lab.topology.LabTopologyError) naming the file and the key at fault."""
    return lab.topology.load(path)


def load_sites_by_address(path: str) -> dict[str, str]:
    """Address -> site from a topology file, as `load_lab_topology` reads it."""
    return sites_by_address(load_lab_topology(path))


def declared_topology(topology: lab.topology.LabTopology) -> DeclaredTopology:
    """The lab's sites with their roles and its links, for the console's map (GET /map)."""
    return DeclaredTopology(
        roles=tuple((site.name, site.role.value) for site in topology.sites),
        links=tuple((link.a, link.b, link.cost) for link in topology.links),
    )
