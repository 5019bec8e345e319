"""The extranet as its operators declare it: sites with their roles and the physical links
between them. The analyzer knows no lab or inventory format: the deployment wiring translates
its own (xnetmon/lab_sites.py for a lab topology) into this plain record, which the console's
map (GET /map) draws beside what traced paths show."""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("core", "province", "city", "county")  # centre outwards: the console draws them in this order


@dataclass(frozen=True, slots=True)
class DeclaredTopology:
    roles: tuple[tuple[str, str], ...]  # (site, role), role one of ROLES
    links: tuple[tuple[str, str, int], ...]  # (a, b, cost): one physical link, either direction; lower cost preferred

    def __post_init__(self) -> None:
        unknown = sorted({role for _, role in self.roles} - set(ROLES))
        if unknown:
            raise ValueError(f"unknown site role(s) {unknown} (roles are: {', '.join(ROLES)})")
        sites = {site for site, _ in self.roles}
        strays = sorted({end for a, b, _ in self.links for end in (a, b)} - sites)
        if strays:
            raise ValueError(f"links name undeclared site(s) {strays}")
