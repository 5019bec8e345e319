"""Routing as a converged link-state IGP would leave it: shortest paths by link cost.

Pure functions over the topology. The lab installs the result as static routes and
recomputes it whenever a link or site goes down or comes back, so "a down link reroutes
or blackholes as routing dictates". Ties are broken by fewer hops, then by site names,
so the same topology always gives the same paths.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from lab.topology import LabTopology, Link


@dataclass(frozen=True, slots=True)
class Route:
    """One static route in one site: `prefix via next_hop dev interface src source`."""

    site: str
    prefix: str
    next_hop: str
    interface: str
    source: str


def _usable(topology: LabTopology, down_links: frozenset[str], down_sites: frozenset[str]) -> list[Link]:
    return [
        link
        for link in topology.links
        if link.name not in down_links and link.a not in down_sites and link.b not in down_sites
    ]


def shortest_paths(
    topology: LabTopology,
    source: str,
    down_links: frozenset[str] = frozenset(),
    down_sites: frozenset[str] = frozenset(),
) -> dict[str, tuple[str, ...]]:
    """Best path (as a tuple of site names, source first) from `source` to every reachable site."""
    adjacency: dict[str, list[tuple[str, int]]] = {s.name: [] for s in topology.sites}
    for link in _usable(topology, down_links, down_sites):
        adjacency[link.a].append((link.b, link.cost))
        adjacency[link.b].append((link.a, link.cost))
    if source in down_sites:
        return {source: (source,)}
    best: dict[str, tuple[int, int, tuple[str, ...]]] = {}
    heap: list[tuple[int, int, tuple[str, ...]]] = [(0, 0, (source,))]
    while heap:
        cost, hops, path = heapq.heappop(heap)
        node = path[-1]
        if node in best:
            continue
        best[node] = (cost, hops, path)
        for peer, link_cost in adjacency[node]:
            if peer not in best:
                heapq.heappush(heap, (cost + link_cost, hops + 1, path + (peer,)))
    return {node: entry[2] for node, entry in best.items()}


def path(
    topology: LabTopology,
    source: str,
    destination: str,
    down_links: frozenset[str] = frozenset(),
    down_sites: frozenset[str] = frozenset(),
) -> tuple[str, ...] | None:
    return shortest_paths(topology, source, down_links, down_sites).get(destination)


def path_links(topology: LabTopology, hops: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(topology.link_between(a, b).name for a, b in zip(hops, hops[1:]))


def alternate_path(
    topology: LabTopology,
    source: str,
    destination: str,
    via: str | None = None,
    down_links: frozenset[str] = frozenset(),
    down_sites: frozenset[str] = frozenset(),
) -> tuple[str, ...] | None:
    """A path other than the best one: through `via` if given, else the best path that
    avoids the primary path's links (or, failing that, avoids one of them)."""
    primary = path(topology, source, destination, down_links, down_sites)
    if primary is None:
        return None
    if via is not None:
        return _path_via(topology, source, destination, via, primary, down_links, down_sites)
    used = frozenset(path_links(topology, primary))
    candidate = path(topology, source, destination, down_links | used, down_sites)
    if candidate is not None:
        return candidate
    options = []
    for link in sorted(used):
        found = path(topology, source, destination, down_links | {link}, down_sites)
        if found is not None:
            options.append(found)
    if not options:
        return None
    return min(options, key=lambda hops: (cost_of(topology, hops), len(hops), hops))


def _path_via(
    topology: LabTopology,
    source: str,
    destination: str,
    via: str,
    primary: tuple[str, ...],
    down_links: frozenset[str],
    down_sites: frozenset[str],
) -> tuple[str, ...] | None:
    """The cheapest loop-free path through `via`: one leg shortest, the other leg the
    shortest that avoids the first leg's sites (tried both ways round)."""
    options = []
    first = path(topology, source, via, down_links, down_sites)
    if first is not None:
        second = path(topology, via, destination, down_links, down_sites | frozenset(first[:-1]))
        if second is not None:
            options.append(first + second[1:])
    second = path(topology, via, destination, down_links, down_sites)
    if second is not None:
        first = path(topology, source, via, down_links, down_sites | frozenset(second[1:]))
        if first is not None:
            options.append(first + second[1:])
    options = [hops for hops in options if hops != primary]
    if not options:
        return None
    return min(options, key=lambda hops: (cost_of(topology, hops), len(hops), hops))


def cost_of(topology: LabTopology, hops: tuple[str, ...]) -> int:
    return sum(topology.link_between(a, b).cost for a, b in zip(hops, hops[1:]))


def next_hop_route(topology: LabTopology, site: str, prefix: str, peer: str) -> Route:
    link = topology.link_between(site, peer)
    return Route(
        site=site,
        prefix=prefix,
        next_hop=topology.link_address(link.name, peer),
        interface=link.interface(site),
        # Traffic a site originates leaves from its loopback, and so do the ICMP errors
        # it sends (the kernel takes the route's preferred source): hop lists read as sites.
        source=topology.loopback(site),
    )


def routes(
    topology: LabTopology,
    down_links: frozenset[str] = frozenset(),
    down_sites: frozenset[str] = frozenset(),
) -> dict[str, list[Route]]:
    """Every site's static routes: to each other site's loopback and host /64, and to the
    /64 of every link it is not attached to (towards the nearer end)."""
    table: dict[str, list[Route]] = {s.name: [] for s in topology.sites}
    for site in topology.sites:
        if site.name in down_sites:
            continue
        paths = shortest_paths(topology, site.name, down_links, down_sites)
        for other in topology.sites:
            hops = paths.get(other.name)
            if other.name == site.name or hops is None:
                continue
            for prefix in (topology.loopback(other.name) + "/128", topology.host_prefix(other.name)):
                table[site.name].append(next_hop_route(topology, site.name, prefix, hops[1]))
        for link in topology.links:
            if site.name in link.ends:
                continue
            reachable = [paths[end] for end in link.ends if end in paths]
            if not reachable:
                continue
            hops = min(reachable, key=lambda h: (cost_of(topology, h), len(h), h))
            table[site.name].append(next_hop_route(topology, site.name, topology.link_prefix(link.name), hops[1]))
    return table
