"""The extranet as traced paths show it: nodes, links, and which paths use each link.

Each `PathObservation` is a hop list from a source site to a target. Consecutive answering
hops give a link; silent hops (`*`) in between are counted on the link (`hidden_hops`),
not invented as nodes, so that a router that never answers does not split one physical
link into made-up pieces. The first link starts at the source site itself. Links are
directed, source side first, as the probes travelled them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from collector.contract.records import PathObservation


@dataclass(frozen=True, slots=True)
class Link:
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
class Topology:
    nodes: dict[str, str] = field(default_factory=dict)  # node -> role: site | router | target
    links: dict[Link, list[PathUse]] = field(default_factory=dict)

    @classmethod
    def from_observations(cls, observations: Iterable[PathObservation]) -> Topology:
        topology = cls()
        for observation in sorted(observations, key=lambda o: (o.source, o.target, o.slice)):
            topology.add(observation)
        return topology

    def add(self, observation: PathObservation) -> None:
        use = PathUse(observation.source, observation.target, observation.slice, observation.fingerprint)
        self.nodes[observation.source] = "site"
        for a, b, hidden in links_of(observation):
            self.nodes.setdefault(b, "router")
            self.links.setdefault(Link(a, b, hidden), []).append(use)
        if observation.reached and observation.hops and observation.hops[-1] is not None:
            self.nodes[observation.hops[-1]] = "target"


def links_of(observation: PathObservation) -> list[tuple[str, str, int]]:
    """(from, to, silent hops between) for each pair of consecutive answering nodes."""
    links = []
    previous, hidden = observation.source, 0
    for hop in observation.hops:
        if hop is None:
            hidden += 1
            continue
        if hop != previous:  # a hop that answers twice in a row (rate limits, loops) is one node
            links.append((previous, hop, hidden))
        previous, hidden = hop, 0
    return links
