"""The extranet as traced paths show it: nodes, links, and which paths use each link
(what GET /topology answers).

Nodes and links are named by analyzer.traced_links, as the root-cause hints name them. A node's
role: "site" where an agent traces from, "target" where a trace that reached its target ended,
"router" otherwise; a site stays a site when other sites' traces end there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from analyzer.traced_links import traced_route
from collector.contract.records import PathObservation

_RANK = {"router": 0, "target": 1, "site": 2}  # the role a node keeps when traces disagree


@dataclass(frozen=True, slots=True)
class TracedLink:
    a: str  # the node nearer the source
    b: str
    hidden_hops: int  # silent hops between a and b (0: adjacent)


@dataclass(frozen=True, slots=True)
class PathUse:
    source: str
    target: str
    slice: str
    fingerprint: str


@dataclass
class TracedTopology:
    nodes: dict[str, str] = field(default_factory=dict)  # node -> role: site | router | target
    links: dict[TracedLink, list[PathUse]] = field(default_factory=dict)

    @classmethod
    def from_observations(
        cls, observations: Iterable[PathObservation], names: Mapping[str, str] | None = None
    ) -> TracedTopology:
        """`names`: address -> site (analyzer.traced_links.hop_names); without, hops stay addresses."""
        topology = cls()
        for observation in sorted(observations, key=lambda o: (o.source, o.target, o.slice)):
            topology.add(observation, names or {})
        return topology

    def add(self, observation: PathObservation, names: Mapping[str, str]) -> None:
        route = traced_route(observation, names)
        use = PathUse(observation.source, observation.target, observation.slice, observation.fingerprint)
        self._mark(route.nodes[0], "site")
        for a, b, hidden in route.links():
            self._mark(b, "router")
            self.links.setdefault(TracedLink(a, b, hidden), []).append(use)
        if observation.reached and observation.hops and observation.hops[-1] is not None:
            self._mark(route.nodes[-1], "target")

    def _mark(self, node: str, role: str) -> None:
        current = self.nodes.get(node)
        if current is None or _RANK[role] > _RANK[current]:
            self.nodes[node] = role
