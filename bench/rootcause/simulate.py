"""One epoch of path evidence from a network, a probe plan and a set of faults.

Per path and epoch, 100 probes (the plan's budget). A fault is a set of impairments on
components, per slice: a loss ratio, a one-way delay, added jitter; or routing changes
(links taken out of routing). Everything else:

- background: every directed link loses 1e-4 of packets, always;
- losses are drawn binomially: forward losses out of the probes sent, reverse losses out of
  those that reached the far end. STAMP paths report the split (a stateful reflector counts
  what reached it) unless nothing came back, when the split is unknown; echo paths report
  only the total;
- RTT: each physical link has a propagation delay (0.2-3 ms each way, seeded); a path's
  baseline is the sum over its links both ways, its epoch median differs from the baseline
  by a fixed per-path amount (N(0, 0.1 ms)), its baseline jitter is 0.1-0.5 ms;
- a rerouted path takes the new shortest path, reports `path_changed` with the RTT step and
  its previous route;
- pseudo-components: "host:<source>" on every path (both directions: the agent sends and
  receives), "service:<target>" on STAMP paths (the reflector, both directions).

Loss and delay are computed for all paths at once with sparse matrices (paths x components
per slice); PathEvidence objects are made afresh only for paths that lost a probe or were
impaired, the other ~85% reuse a clean object made once (they are identical every epoch).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse

from analyzer.rootcause.model import Epoch, PathEvidence, link_name
from bench.rootcause.national_topology import NationalTopology
from bench.rootcause.plan import PROBES_PER_EPOCH, SLICES, PlannedPath

BACKGROUND_LOSS = 1e-4


def components(nodes: list[str]) -> list[str]:
    out = [nodes[0]]
    for a, b in zip(nodes, nodes[1:]):
        out += [link_name(a, b), b]
    return out


@dataclass
class Impairments:
    """What the faults of one trial do; keys are (component, slice) with slice None for all."""

    loss: dict[tuple[str, str | None], float] = field(default_factory=dict)
    delay_s: dict[tuple[str, str | None], float] = field(default_factory=dict)
    jitter_s: dict[tuple[str, str | None], float] = field(default_factory=dict)
    unrouted: set[tuple[str, str]] = field(default_factory=set)  # directed links out of routing

    def add_loss(self, component: str, ratio: float, slices=(None,)) -> None:
        for slice_ in slices:
            kept = (1.0 - self.loss.get((component, slice_), 0.0)) * (1.0 - ratio)
            self.loss[(component, slice_)] = 1.0 - kept


class World:
    """A network with its plan routed: per path, its components and clean evidence."""

    def __init__(self, network: NationalTopology, plan: list[PlannedPath], seed: int) -> None:
        self.network = network
        self.plan = plan
        rng = random.Random(seed * 104729 + 3)
        self.propagation = {}
        for a, b in network.physical_links():
            delay = rng.uniform(0.0002, 0.003)
            self.propagation[link_name(a, b)] = self.propagation[link_name(b, a)] = delay
        self.columns: dict[str, int] = {}
        self.forward_nodes = [network.route(p.source, p.target, p.flow) for p in plan]
        self.reverse_nodes = [network.route(p.target, p.source, p.flow ^ 0x5A5A5A5A) for p in plan]
        self.slice_of = np.asarray([SLICES.index(p.slice) for p in plan], dtype=np.int64)
        self.forward_parts = [self._forward(p, nodes) for p, nodes in zip(plan, self.forward_nodes)]
        self.reverse_parts = [tuple(components(nodes)) for nodes in self.reverse_nodes]
        self.forward_matrix = self._matrix(self.forward_parts)
        self.reverse_matrix = self._matrix([self._sim_reverse(p, parts) for p, parts in zip(plan, self.reverse_parts)])
        self.forward_links = np.asarray([sum(">" in c for c in parts) for parts in self.forward_parts])
        self.reverse_links = np.asarray([sum(">" in c for c in parts) for parts in self.reverse_parts])
        self.baseline_rtt = np.asarray([self._rtt(f, r) for f, r in zip(self.forward_parts, self.reverse_parts)])
        self.rtt_offset = np.asarray([rng.gauss(0.0, 0.0001) for _ in plan])
        self.baseline_jitter = np.asarray([rng.uniform(0.0001, 0.0005) for _ in plan])
        self.clean = [self._evidence(i, 0, 0) for i in range(len(plan))]
        self.paths_through: dict[str, list[int]] | None = None

    # -- building ------------------------------------------------------------------------

    @staticmethod
    def _forward(p: PlannedPath, nodes: list[str]) -> tuple[str, ...]:
        return (f"host:{p.source}", *components(nodes), *((f"service:{p.target}",) if p.stamp else ()))

    @staticmethod
    def _sim_reverse(p: PlannedPath, parts: tuple[str, ...]) -> tuple[str, ...]:
        # the reflector sends the reply and the agent receives it: both are on the way back too
        return (*parts, f"host:{p.source}", *((f"service:{p.target}",) if p.stamp else ()))

    def _column(self, name: str) -> int:
        return self.columns.setdefault(name, len(self.columns))

    def _matrix(self, rows: list[tuple[str, ...]]) -> sparse.csr_matrix:
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        indices = []
        for i, parts in enumerate(rows):
            cols = sorted({self._column(c) for c in parts})
            indices += cols
            indptr[i + 1] = len(indices)
        return sparse.csr_matrix(
            (np.ones(len(indices)), np.asarray(indices, dtype=np.int64), indptr), shape=(len(rows), 1 << 16)
        )

    def _rtt(self, forward: tuple[str, ...], reverse: tuple[str, ...]) -> float:
        return sum(self.propagation.get(c, 0.0) for c in forward) + sum(self.propagation.get(c, 0.0) for c in reverse)

    def _evidence(
        self,
        i: int,
        forward_lost: int,
        reverse_lost: int,
        *,
        delay_s: float | None = None,
        jitter_s: float | None = None,
        forward=None,
        reverse=None,
        previous=None,
        delay_delta_s: float | None = None,
    ) -> PathEvidence:
        p = self.plan[i]
        lost = forward_lost + reverse_lost
        received = PROBES_PER_EPOCH - lost
        split = p.stamp and received > 0
        base = float(self.baseline_rtt[i])
        return PathEvidence(
            path_id=p.path_id,
            source=p.source,
            target=p.target,
            target_site=self.network.parent_site[p.target],
            slice=p.slice,
            forward=forward or self.forward_parts[i],
            reverse=reverse or self.reverse_parts[i],
            sent=PROBES_PER_EPOCH,
            lost=lost,
            forward_lost=forward_lost if split else None,
            reverse_lost=reverse_lost if split else None,
            delay_s=None if received == 0 else (delay_s if delay_s is not None else base + float(self.rtt_offset[i])),
            baseline_delay_s=base,
            jitter_s=None if received == 0 else (jitter_s if jitter_s is not None else float(self.baseline_jitter[i])),
            baseline_jitter_s=float(self.baseline_jitter[i]),
            path_changed=previous is not None,
            delay_delta_s=delay_delta_s,
            previous_forward=previous[0] if previous else None,
            previous_reverse=previous[1] if previous else None,
        )

    def paths_crossing(self, component: str) -> list[int]:
        if self.paths_through is None:
            self.paths_through = {}
            for i, (f, r) in enumerate(zip(self.forward_parts, self.reverse_parts)):
                for c in set(f) | set(r):
                    self.paths_through.setdefault(c, []).append(i)
        return self.paths_through.get(component, [])

    # -- one epoch -----------------------------------------------------------------------

    def epoch(self, impairments: Impairments, rng: np.random.Generator) -> Epoch:
        count = len(self.plan)
        loss_x = self._per_slice(impairments.loss, lambda v: -np.log1p(-min(v, 1.0 - 1e-12)))
        delay = self._per_slice(impairments.delay_s, float)
        jitter = self._per_slice(impairments.jitter_s, float)
        rows = np.arange(count)
        rerouted = self._reroutes(impairments)
        forward_x = (self.forward_matrix @ loss_x)[rows, self.slice_of] if loss_x is not None else np.zeros(count)
        reverse_x = (self.reverse_matrix @ loss_x)[rows, self.slice_of] if loss_x is not None else np.zeros(count)
        forward_links, reverse_links = self.forward_links.copy(), self.reverse_links.copy()
        for i, (forward, reverse, _) in rerouted.items():
            forward_x[i] = self._sum(forward, impairments.loss, i, lambda v: -np.log1p(-min(v, 1.0 - 1e-12)))
            reverse_x[i] = self._sum(
                reverse + self._reverse_pseudo(i), impairments.loss, i, lambda v: -np.log1p(-min(v, 1.0 - 1e-12))
            )
            forward_links[i] = sum(">" in c for c in forward)
            reverse_links[i] = sum(">" in c for c in reverse)
        forward_keep = np.exp(-forward_x) * (1 - BACKGROUND_LOSS) ** forward_links
        reverse_keep = np.exp(-reverse_x) * (1 - BACKGROUND_LOSS) ** reverse_links
        forward_lost = rng.binomial(PROBES_PER_EPOCH, 1.0 - forward_keep)
        reverse_lost = rng.binomial(PROBES_PER_EPOCH - forward_lost, 1.0 - reverse_keep)
        both = self.forward_matrix + self.reverse_matrix
        extra_delay = (both @ delay)[rows, self.slice_of] if delay is not None else np.zeros(count)
        extra_jitter = (both @ jitter)[rows, self.slice_of] if jitter is not None else np.zeros(count)
        touched = (forward_lost > 0) | (reverse_lost > 0) | (extra_delay != 0) | (extra_jitter != 0)
        touched[list(rerouted)] = True
        paths = list(self.clean)
        for i in np.flatnonzero(touched).tolist():
            fl, rl = int(forward_lost[i]), int(reverse_lost[i])
            if i in rerouted:
                forward, reverse, base = rerouted[i]
                step = self._sum(forward + reverse, impairments.delay_s, i, float)
                paths[i] = self._evidence(
                    i,
                    fl,
                    rl,
                    delay_s=base + float(self.rtt_offset[i]) + step,
                    jitter_s=float(self.baseline_jitter[i])
                    + self._sum(forward + reverse, impairments.jitter_s, i, float),
                    forward=forward,
                    reverse=reverse,
                    previous=(self.forward_parts[i], self.reverse_parts[i]),
                    delay_delta_s=base - float(self.baseline_rtt[i]),
                )
            else:
                paths[i] = self._evidence(
                    i,
                    fl,
                    rl,
                    delay_s=float(self.baseline_rtt[i] + self.rtt_offset[i] + extra_delay[i]),
                    jitter_s=float(self.baseline_jitter[i] + extra_jitter[i]),
                )
        return Epoch(tuple(paths))

    def _per_slice(self, values: dict, convert) -> np.ndarray | None:
        if not values:
            return None
        matrix = np.zeros((self.forward_matrix.shape[1], len(SLICES)))
        for (component, slice_), value in values.items():
            column = self.columns.get(component)
            if column is None:
                continue
            targets = range(len(SLICES)) if slice_ is None else [SLICES.index(slice_)]
            for s in targets:
                matrix[column, s] += convert(value)
        return matrix

    def _sum(self, parts, values: dict, i: int, convert) -> float:
        slice_ = self.plan[i].slice
        total = 0.0
        for c in parts:
            for key in ((c, None), (c, slice_)):
                if key in values:
                    total += convert(values[key])
        return total

    def _reverse_pseudo(self, i: int) -> tuple[str, ...]:
        p = self.plan[i]
        return (f"host:{p.source}", *((f"service:{p.target}",) if p.stamp else ()))

    def _reroutes(self, impairments: Impairments) -> dict[int, tuple[tuple[str, ...], tuple[str, ...], float]]:
        """Paths whose route crosses a link out of routing: their new (forward, reverse, baseline RTT)."""
        if not impairments.unrouted:
            return {}
        affected = sorted({i for a, b in impairments.unrouted for i in self.paths_crossing(link_name(a, b))})
        router = self.network.without(frozenset(impairments.unrouted))
        out = {}
        for i in affected:
            p = self.plan[i]
            forward_nodes = router.route(p.source, p.target, p.flow)
            reverse_nodes = router.route(p.target, p.source, p.flow ^ 0x5A5A5A5A)
            if forward_nodes is None or reverse_nodes is None:
                continue  # no other way: the path simply fails, as a down link
            forward = self._forward(p, forward_nodes)
            reverse = tuple(components(reverse_nodes))
            if forward == self.forward_parts[i] and reverse == self.reverse_parts[i]:
                continue
            out[i] = (forward, reverse, self._rtt(forward, reverse))
        return out
