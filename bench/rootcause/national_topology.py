"""Seeded hierarchical extranets and their shortest-path routing with ECMP.

Shape at scale 1 (the national extranet): 4 core routers in a full mesh;
31 provinces with 2 routers each, both joined to each other and each to 2 of the cores;
330 cities with 2 routers each, joined to each other and each to both routers of its
province; 2,800 counties with one router each, 70% dual-homed to both routers of their
city and 30% single-homed to one. With seed 1001 that is 3,526 nodes and 6,584 physical
links (the single/dual-homing draw varies with the seed); links are directed in the
engine, so 13,168 directed links. `scale` shrinks every level but the core
(for smoke tests).

Costs: 10 on every uplink, 5 between the two routers of a site, 10 in the core mesh, so
shortest paths climb the hierarchy as real IGP metrics make them. Routing is Dijkstra
(heapq) towards each target, then a walk from the source that picks among equal-cost next
hops by a hash of the flow and the node, the way a router hashes a flow onto ECMP members:
one flow keeps one path, different flows spread.
"""

from __future__ import annotations

import heapq
import random
import zlib
from array import array
from dataclasses import dataclass, field

UPLINK_COST = 10
PAIR_COST = 5


@dataclass
class NationalTopology:
    nodes: list[str]
    level: dict[str, str]  # node -> core | province | city | county
    parent_site: dict[str, str]  # router -> the site it belongs to (prov7, city12, cnty301)
    adjacency: dict[str, dict[str, int]]  # node -> neighbour -> cost
    sites: dict[str, list[str]] = field(default_factory=dict)  # site -> its routers
    _index: dict[str, int] = field(default_factory=dict)
    _neighbours: list[list[tuple[int, int]]] = field(default_factory=list)
    _distances: dict[int, array] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._index = {name: i for i, name in enumerate(self.nodes)}
        self._neighbours = [sorted((self._index[v], c) for v, c in self.adjacency[name].items()) for name in self.nodes]

    def physical_links(self) -> list[tuple[str, str]]:
        return sorted((a, b) for a in self.adjacency for b in self.adjacency[a] if a < b)

    def route(self, source: str, target: str, flow: int) -> list[str] | None:
        """Nodes from source to target along a shortest path, ECMP member chosen by the flow hash."""
        t = self._index[target]
        distance = self._distances.get(t)
        if distance is None:
            distance = self._distances[t] = dijkstra(self._neighbours, t)
        node = self._index[source]
        if distance[node] < 0:
            return None
        names, neighbours = self.nodes, self._neighbours
        path = [names[node]]
        while node != t:
            here = distance[node]
            hops = [v for v, cost in neighbours[node] if distance[v] == here - cost]
            node = hops[zlib.crc32(f"{flow}/{node}".encode()) % len(hops)] if len(hops) > 1 else hops[0]
            path.append(names[node])
        return path

    def without(self, links: frozenset[tuple[str, str]]) -> NationalTopology:
        """The same network with these directed links out of routing (a reroute), own route cache."""
        cut = {(self._index[a], self._index[b]) for a, b in links}
        other = NationalTopology(self.nodes, self.level, self.parent_site, self.adjacency, self.sites)
        other._neighbours = [[(v, c) for v, c in hops if (u, v) not in cut] for u, hops in enumerate(self._neighbours)]
        return other


def dijkstra(neighbours: list[list[tuple[int, int]]], target: int) -> array:
    """Distance from every node to `target` (-1: unreachable); costs are symmetric."""
    unreached = 1 << 30
    distance = [unreached] * len(neighbours)
    distance[target] = 0
    heap = [(0, target)]
    pop, push = heapq.heappop, heapq.heappush
    while heap:
        d, node = pop(heap)
        if d > distance[node]:
            continue
        for neighbour, cost in neighbours[node]:
            nd = d + cost
            if nd < distance[neighbour]:
                distance[neighbour] = nd
                push(heap, (nd, neighbour))
    return array("i", (-1 if d == unreached else d for d in distance))


def generate(seed: int, scale: float = 1.0) -> NationalTopology:
    rng = random.Random(seed)
    provinces = max(2, round(31 * scale))
    cities = max(provinces, round(330 * scale))
    counties = max(cities, round(2800 * scale))
    adjacency: dict[str, dict[str, int]] = {}
    level: dict[str, str] = {}
    parent_site: dict[str, str] = {}
    sites: dict[str, list[str]] = {}

    def node(name: str, kind: str, site: str) -> str:
        adjacency[name] = {}
        level[name] = kind
        parent_site[name] = site
        sites.setdefault(site, []).append(name)
        return name

    def join(a: str, b: str, cost: int) -> None:
        adjacency[a][b] = cost
        adjacency[b][a] = cost

    cores = [node(f"core{i + 1}", "core", f"core{i + 1}") for i in range(4)]
    for i, a in enumerate(cores):
        for b in cores[i + 1 :]:
            join(a, b, UPLINK_COST)
    province_routers = []
    for p in range(provinces):
        site = f"prov{p + 1}"
        pair = [node(f"{site}a", "province", site), node(f"{site}b", "province", site)]
        join(pair[0], pair[1], PAIR_COST)
        for i, router in enumerate(pair):
            for core in (cores[(p + i) % 4], cores[(p + i + 1) % 4]):
                join(router, core, UPLINK_COST)
        province_routers.append(pair)
    city_routers = []
    for c in range(cities):
        site = f"city{c + 1}"
        province = province_routers[c % provinces] if c < provinces else rng.choice(province_routers)
        pair = [node(f"{site}a", "city", site), node(f"{site}b", "city", site)]
        join(pair[0], pair[1], PAIR_COST)
        for router in pair:
            for up in province:
                join(router, up, UPLINK_COST)
        city_routers.append(pair)
    for k in range(counties):
        site = f"cnty{k + 1}"
        city = city_routers[k % cities] if k < cities else rng.choice(city_routers)
        router = node(site, "county", site)
        if rng.random() < 0.7:
            for up in city:
                join(router, up, UPLINK_COST)
        else:
            join(router, rng.choice(city), UPLINK_COST)
    return NationalTopology(
        nodes=list(adjacency), level=level, parent_site=parent_site, adjacency=adjacency, sites=sites
    )
