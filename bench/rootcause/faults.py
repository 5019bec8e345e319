"""The fault mix: each class draws one fault, with the truth a diagnosis is scored against.

Truth of a fault: the set of components that are really faulty (a link fault in both
directions is both directed links), the kind an operator should read, and the slices hit.

| class | what | kind |
|---|---|---|
| gray-loss | 0.1-5% loss (log-uniform) on a link, both directions (70%) or one | link-loss / one-direction |
| blackhole | 100% loss on a link, both directions (70%) or one | link-down |
| node-down | a province, city or county router loses everything | node-down |
| partial-node | 2 or 3 of a province or city router's links (both directions) down | link-down |
| latency | +5-50 ms RTT on a link (half each way), no loss | latency-shift |
| congestion | one direction of a link: 0.5-5% loss, +5-50 ms, +2-10 ms jitter | congestion |
| single-slice | one slice of a link (both directions): 1-5% loss or 100% | slice-isolation |
| probe-host | an agent loses 10-100% of its probes both ways and lags 5-50 ms | probe-host |
| reflector-down | a STAMP reflector stops answering (echo to its site still works) | reflector-down |
| reroute | a link between routers of different levels is taken out of routing | path-change |
| multi | 1-5 faults of the classes above, on disjoint components | each its own |
| healthy | nothing but background loss | (none) |

Faulty links are drawn among links the plan's paths cross (a fault nobody probes is not a
test of inference). Reroutes are drawn among links whose loss leaves every path a route.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from analyzer.rootcause.model import link_name
from bench.rootcause.plan import SLICES
from bench.rootcause.simulate import Impairments, World

SINGLE_CLASSES = (
    "gray-loss",
    "blackhole",
    "node-down",
    "partial-node",
    "latency",
    "congestion",
    "single-slice",
    "probe-host",
    "reflector-down",
    "reroute",
)
CLASSES = SINGLE_CLASSES + ("multi", "healthy")


@dataclass(frozen=True, slots=True)
class Truth:
    fault_class: str
    components: frozenset[str]
    kind: str
    slices: frozenset[str]


class FaultDrawer:
    def __init__(self, world: World) -> None:
        self.world = world
        network = world.network
        probed = {c for parts in world.forward_parts for c in parts} | {
            c for parts in world.reverse_parts for c in parts
        }
        self.links = [
            (a, b) for a, b in network.physical_links() if link_name(a, b) in probed and link_name(b, a) in probed
        ]
        self.routers = sorted(n for n in network.nodes if network.level[n] != "core" and n in probed)
        self.hubs = sorted(
            n for n in self.routers if network.level[n] in ("province", "city") and len(network.adjacency[n]) >= 3
        )
        self.agents = sorted({p.source for p in world.plan})
        stamp_targets = {p.target for p in world.plan if p.stamp}
        echo_targets = {p.target for p in world.plan if not p.stamp}
        self.reflectors = sorted(stamp_targets & echo_targets)
        # a reroute needs another way round: both ends keep another neighbour
        self.reroutable = [
            (a, b)
            for a, b in self.links
            if network.level[a] != network.level[b]
            and len(network.adjacency[a]) >= 2
            and len(network.adjacency[b]) >= 2
        ]

    def draw(self, fault_class: str, rng: random.Random, impairments: Impairments) -> list[Truth]:
        if fault_class == "healthy":
            return []
        if fault_class == "multi":
            truths: list[Truth] = []
            for _ in range(rng.randint(1, 5)):
                for _attempt in range(20):
                    trial = Impairments()
                    drawn = self.draw(rng.choice(SINGLE_CLASSES), rng, trial)
                    used = set().union(*(_near(t.components) for t in truths))
                    if not any(used & _near(t.components) for t in drawn):
                        _merge(impairments, trial)
                        truths += drawn
                        break
            return truths
        return [getattr(self, "_" + fault_class.replace("-", "_"))(rng, impairments)]

    def _link(self, rng: random.Random, pool=None) -> tuple[str, str]:
        a, b = rng.choice(pool or self.links)
        return (a, b) if rng.random() < 0.5 else (b, a)

    def _gray_loss(self, rng, imp: Impairments) -> Truth:
        a, b = self._link(rng)
        ratio = math.exp(rng.uniform(math.log(0.001), math.log(0.05)))
        both = rng.random() < 0.7
        parts = [link_name(a, b)] + ([link_name(b, a)] if both else [])
        for part in parts:
            imp.add_loss(part, ratio)
        return Truth("gray-loss", frozenset(parts), "link-loss" if both else "one-direction", frozenset(SLICES))

    def _blackhole(self, rng, imp: Impairments) -> Truth:
        a, b = self._link(rng)
        parts = [link_name(a, b)] + ([link_name(b, a)] if rng.random() < 0.7 else [])
        for part in parts:
            imp.add_loss(part, 1.0)
        return Truth("blackhole", frozenset(parts), "link-down", frozenset(SLICES))

    def _node_down(self, rng, imp: Impairments) -> Truth:
        node = rng.choice(self.routers)
        imp.add_loss(node, 1.0)
        return Truth("node-down", frozenset([node]), "node-down", frozenset(SLICES))

    def _partial_node(self, rng, imp: Impairments) -> Truth:
        node = rng.choice(self.hubs)
        neighbours = sorted(self.world.network.adjacency[node])
        chosen = rng.sample(neighbours, rng.randint(2, min(3, len(neighbours) - 1)))  # a line card, not the node
        parts = [name for other in chosen for name in (link_name(node, other), link_name(other, node))]
        for part in parts:
            imp.add_loss(part, 1.0)
        return Truth("partial-node", frozenset(parts), "link-down", frozenset(SLICES))

    def _latency(self, rng, imp: Impairments) -> Truth:
        a, b = self._link(rng)
        step = rng.uniform(0.005, 0.05)
        parts = [link_name(a, b), link_name(b, a)]
        for part in parts:
            imp.delay_s[(part, None)] = step / 2
        return Truth("latency", frozenset(parts), "latency-shift", frozenset(SLICES))

    def _congestion(self, rng, imp: Impairments) -> Truth:
        a, b = self._link(rng)
        part = link_name(a, b)
        imp.add_loss(part, rng.uniform(0.005, 0.05))
        imp.delay_s[(part, None)] = rng.uniform(0.005, 0.05)
        imp.jitter_s[(part, None)] = rng.uniform(0.002, 0.01)
        return Truth("congestion", frozenset([part]), "congestion", frozenset(SLICES))

    def _single_slice(self, rng, imp: Impairments) -> Truth:
        a, b = self._link(rng)
        slice_ = rng.choice(SLICES)
        ratio = 1.0 if rng.random() < 0.5 else rng.uniform(0.01, 0.05)
        parts = [link_name(a, b), link_name(b, a)]
        for part in parts:
            imp.add_loss(part, ratio, (slice_,))
        return Truth("single-slice", frozenset(parts), "slice-isolation", frozenset([slice_]))

    def _probe_host(self, rng, imp: Impairments) -> Truth:
        site = rng.choice(self.agents)
        part = f"host:{site}"
        imp.add_loss(part, rng.uniform(0.1, 1.0))
        imp.delay_s[(part, None)] = rng.uniform(0.005, 0.05)
        return Truth("probe-host", frozenset([part]), "probe-host", frozenset(SLICES))

    def _reflector_down(self, rng, imp: Impairments) -> Truth:
        part = f"service:{rng.choice(self.reflectors)}"
        imp.add_loss(part, 1.0)
        return Truth("reflector-down", frozenset([part]), "reflector-down", frozenset(SLICES))

    def _reroute(self, rng, imp: Impairments) -> Truth:
        a, b = rng.choice(self.reroutable)
        imp.unrouted |= {(a, b), (b, a)}
        return Truth("reroute", frozenset([link_name(a, b), link_name(b, a)]), "path-change", frozenset(SLICES))


def _near(parts: frozenset[str]) -> set[str]:
    """A fault's components and the nodes at their ends (two faults on one spot would be one fault)."""
    out = set(parts)
    for part in parts:
        name = part.split(":", 1)[-1]
        out |= set(name.split(">"))
    return out


def _merge(into: Impairments, other: Impairments) -> None:
    for (component, slice_), ratio in other.loss.items():
        into.add_loss(component, ratio, (slice_,))
    into.delay_s.update(other.delay_s)
    into.jitter_s.update(other.jitter_s)
    into.unrouted |= other.unrouted
