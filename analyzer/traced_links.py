"""Traced hops as named nodes and links: the one place where a trace becomes links, so that
GET /topology (analyzer.traced_topology) and the root-cause hints (analyzer.rootcause.evidence)
name the same things.

A hop is named after its site where the address-to-site mapping knows its address, else it
stays its address (compressed). The mapping is a declared one ({address: site}, e.g. from the
lab's topology file) over the target addresses agents probe under a site's name.

Each `PathObservation` is a hop list from a source to a target. Consecutive answering hops
give a link; silent hops (`*`) in between are counted on the link, not invented as nodes, so
that a router that never answers does not split one physical link into made-up pieces. A name
seen twice in a row (a hop answering twice under rate limits or loops, or two routers of one
site) is one node. The first link starts at the source itself, named like any hop (agents
trace from their address). Links are directed, source side first, as the probes went.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Container, Iterable, Iterator, Mapping
from dataclasses import dataclass

from collector.contract.records import PathObservation, PathWindow


@functools.lru_cache(maxsize=1 << 16)
def canonical(address: str) -> str:
    """An IP address in its compressed form; anything else (a site name) as it is."""
    try:
        return ipaddress.ip_address(address).compressed
    except ValueError:
        return address


def by_canonical_address(names: Mapping[str, str] | None) -> dict[str, str]:
    """An {address: site} mapping keyed by compressed addresses, as `hop_names` takes it."""
    return {canonical(address): site for address, site in (names or {}).items()}


def hop_names(declared: Mapping[str, str], windows: Iterable[PathWindow], sites: Container[str]) -> dict[str, str]:
    """Address -> name for traced hops: a target address probed under the name of a site that
    has an agent is that site; `declared` (keyed by `by_canonical_address`) wins over that."""
    names = {canonical(w.target_address): w.key.target for w in windows if w.key.target in sites}
    names.update(declared)
    return names


def name_of(address: str, names: Mapping[str, str]) -> str:
    address = canonical(address)
    return names.get(address, address)


@dataclass(frozen=True, slots=True)
class TracedRoute:
    """One trace's answering nodes, named, source first."""

    nodes: tuple[str, ...]
    hidden: tuple[int, ...]  # silent hops before each node after the first

    def links(self) -> Iterator[tuple[str, str, int]]:
        """(from, to, silent hops between) for each pair of consecutive nodes."""
        return zip(self.nodes, self.nodes[1:], self.hidden)


def traced_route(observation: PathObservation, names: Mapping[str, str]) -> TracedRoute:
    nodes = [name_of(observation.source, names)]
    hidden_before: list[int] = []
    hidden = 0
    for hop in observation.hops:
        if hop is None:
            hidden += 1
            continue
        name = name_of(hop, names)
        if name != nodes[-1]:
            nodes.append(name)
            hidden_before.append(hidden)
        hidden = 0
    return TracedRoute(tuple(nodes), tuple(hidden_before))
