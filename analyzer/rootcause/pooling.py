"""Gray loss found with evidence pooled over several intervals.

A gray loss of 0.1-0.5% on a county link adds a handful of losses per interval across the
~15 paths through it: not significant in one interval at the engine's `epoch_alpha`, plain
over six. `PooledDiagnoser` wraps the stateless engine: each interval it diagnoses that
interval alone (unchanged: strong faults are found, classified and cleared as before), then
runs the gray-loss stage (`engine.gray_losses`) again over every path's sent and lost counts
summed over its last `PoolConfig.epochs` intervals (K), with each link tested over both its
directions' rows together as well as one direction at a time (`EngineConfig.pair_links`,
lossrate's 5.: a faint loss on both directions is twice the excess over less than twice the
background). A pooled finding is reported only where the single interval found nothing on
the same suspects, and its evidence says it was pooled and over how many intervals.

What a path's pool holds, and when it restarts:
- only intervals over the same route: a changed hop list (`path_changed`, or forward or
  reverse components unlike the pool's) restarts it, and a path missing from an interval
  loses its pool (its route may have moved meanwhile);
- not an interval in which the path lost `strong_loss` or more, nor one in which the agent
  at either end reported itself unhealthy (its host's reflector answers from the same
  stalled machine): those are the single interval's (a down link, a stalled host), and
  pooled they would linger as partial loss after the repair, or add a loaded host's drops
  up into a finding on the links near it;
- an interval in which the path crosses a loss the single interval named stays in its pool:
  a loss of 0.2-0.5% is named in some intervals and not in others, and restarting the pools
  there left one or two intervals pooled in the others, too few to name it (in that
  interval the paths through it are the single interval's, left out of the pooled test);
- the pools of the paths through a pooled finding restart when the latest interval alone
  contradicts the pooled loss rate (its losses are below the rate's lower tail at
  `heal_alpha`): a fault that healed clears at once when it was strong enough to tell.

False alarms: the pooled test is a second test per interval, held to its own
`epoch_alpha` (2e-4, as the single test's, shared among every component and every link's
two-direction test), so a healthy interval raises a finding with
probability at most the sum, 4e-4 (the aim is < 1 per 1,000).

Clearing: a faint pooled finding the latest interval cannot contradict (one the single
interval named now and then included) stays while its pooled counts are significant, at
most K - 1 intervals after the fault healed (by then the pools hold only healthy
intervals), and the hint tracker drops it `CLEAR_AFTER_EPOCHS` (2) intervals later: a
pooled hint outlives its fault by at most K + 1 intervals (7, i.e. 70 s with 10 s
intervals), against 2 for a single-interval hint.

Stateful: one instance per stream of intervals (the analyzer's RootCauseRunner), fed in order
from one thread.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

from scipy import stats

from analyzer.rootcause.engine import EngineConfig, diagnose, gray_losses
from analyzer.rootcause.model import Diagnosis, Epoch, PathEvidence

POOL_EPOCHS = 6
_NOT_LOSS = ("latency-shift", "path-change")  # single-interval kinds that explain no loss


@dataclass(frozen=True, slots=True)
class PoolConfig:
    # intervals a path's counts are pooled over (K); 1 turns pooling off
    epochs: int = POOL_EPOCHS
    # the pooled test's share of false findings per healthy interval (added to the engine's own)
    epoch_alpha: float = 2e-4
    # the latest interval's losses through a pooled finding are this unlikely under its rate: healed
    heal_alpha: float = 1e-3
    # a path losing this share in one interval is the single interval's finding: its pool restarts
    strong_loss: float = 0.5
    # a pooled finding explains at least this many lost probes beyond background: a loaded host's
    # bursts of drops on two or three paths add up to a handful over the pool (the lab's 10 probes
    # a path make them significant), a faint link loss nationally to tens
    min_excess_losses: float = 10.0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")


class _PathPool:
    """One path's counts over its last intervals on one route, with their running sums."""

    __slots__ = ("route", "entries", "sent", "lost", "forward_lost", "reverse_lost", "unsplit", "_made")

    def __init__(self, route: tuple) -> None:
        self.route = route
        self.entries: deque[tuple[int, int, int, int, bool]] = deque()
        self.sent = self.lost = self.forward_lost = self.reverse_lost = self.unsplit = 0
        # the last pooled evidence made, with what it was made from: a path whose evidence and
        # sums did not change (most of a quiet epoch's paths, once the pool is full) reuses it
        self._made: tuple[PathEvidence, tuple[int, ...], PathEvidence] | None = None

    def add(self, p: PathEvidence, depth: int) -> None:
        split = p.forward_lost is not None and p.reverse_lost is not None
        entry = (p.sent, p.lost, p.forward_lost or 0, p.reverse_lost or 0, not split)
        self.entries.append(entry)
        self._count(entry, 1)
        if len(self.entries) > depth:
            self._count(self.entries.popleft(), -1)

    def _count(self, entry: tuple[int, int, int, int, bool], sign: int) -> None:
        sent, lost, forward_lost, reverse_lost, unsplit = entry
        self.sent += sign * sent
        self.lost += sign * lost
        self.forward_lost += sign * forward_lost
        self.reverse_lost += sign * reverse_lost
        self.unsplit += sign * unsplit

    def evidence(self, p: PathEvidence) -> PathEvidence:
        """The path with its pooled counts (the latest interval's delay and route)."""
        if len(self.entries) < 2:
            return p
        sums = (self.sent, self.lost, self.forward_lost, self.reverse_lost, self.unsplit)
        if self._made is not None and self._made[0] is p and self._made[1] == sums:
            return self._made[2]
        split = self.unsplit == 0
        pooled = replace(
            p,
            sent=self.sent,
            lost=self.lost,
            forward_lost=self.forward_lost if split else None,
            reverse_lost=self.reverse_lost if split else None,
        )
        self._made = (p, sums, pooled)
        return pooled


class PooledDiagnoser:
    """`diagnose` per interval, plus gray loss over pooled counts (see the module's docstring)."""

    def __init__(
        self,
        config: EngineConfig | None = None,
        pool: PoolConfig = PoolConfig(),
        single: Callable[[Epoch, EngineConfig], list[Diagnosis]] = diagnose,
    ) -> None:
        self.config = config = config if config is not None else EngineConfig()
        self.pool = pool
        self.pooled_config = replace(
            config,
            epoch_alpha=pool.epoch_alpha,
            min_excess_losses=max(config.min_excess_losses, pool.min_excess_losses),
            pair_links=True,
        )
        self.single = single
        self._pools: dict[str, _PathPool] = {}

    def __call__(self, epoch: Epoch) -> list[Diagnosis]:
        found = list(self.single(epoch, self.config))
        # Paths through a loss the single interval explained are its in this interval: pooled,
        # they would pin a second finding on the culprit's neighbours. Their pools keep the
        # interval, for the intervals in which the single test misses the same loss.
        lossy = {s for d in found if d.kind not in _NOT_LOSS for s in d.suspects}
        pooled_paths, deepest = self._pool(epoch)
        if deepest < 2:
            return found
        named = {s for d in found for s in d.suspects}
        unexplained = tuple(pooled for p, pooled in zip(epoch.paths, pooled_paths) if not _through(p, lossy))
        pooled_epoch = Epoch(unexplained, epoch.hosts, epoch.at_ns)
        for d in gray_losses(pooled_epoch, self.pooled_config):
            if named.intersection(d.suspects):
                continue  # the single interval tells it, with today's evidence
            through = [i for i, p in enumerate(epoch.paths) if _crosses(p, d.suspects[0]) and p.slice in d.slices]
            if not through or self._healed(epoch.paths, pooled_paths, through):
                continue
            depth = max(len(self._pools[epoch.paths[i].path_id].entries) for i in through)
            sentence = f"pooled over the last {depth} intervals on unchanged routes (this one alone not significant): "
            found.append(replace(d, evidence=(sentence + d.evidence[0], *d.evidence[1:])))
        return sorted(found, key=lambda d: -d.confidence)

    def _pool(self, epoch: Epoch) -> tuple[list[PathEvidence], int]:
        """Every path of the interval with its pooled counts, and the deepest pool."""
        unhealthy = {h.site for h in epoch.hosts if not h.healthy}
        depth = self.pool.epochs
        pools: dict[str, _PathPool] = {}
        paths = []
        deepest = 0
        for p in epoch.paths:
            route = (p.forward, p.reverse)
            pool = self._pools.get(p.path_id)
            if pool is None or p.path_changed or (pool.route is not route and pool.route != route):
                pool = _PathPool(route)
            if p.source in unhealthy or p.target_site in unhealthy or p.loss >= self.pool.strong_loss:
                pool = _PathPool(route)
                paths.append(p)
            else:
                pool.add(p, depth)
                paths.append(pool.evidence(p))
            pools[p.path_id] = pool
            deepest = max(deepest, len(pool.entries))
        self._pools = pools
        return paths, deepest

    def _healed(self, latest: tuple[PathEvidence, ...], pooled: list[PathEvidence], through: list[int]) -> bool:
        """The latest interval's losses through a finding are too few for its pooled rate: the
        fault went away (its pools restart with the latest interval)."""
        sent = sum(latest[i].sent for i in through)
        lost = sum(latest[i].lost for i in through)
        pooled_sent = sum(pooled[i].sent for i in through)
        rate = sum(pooled[i].lost for i in through) / pooled_sent if pooled_sent else 0.0
        if stats.poisson.cdf(lost, sent * rate) >= self.pool.heal_alpha:
            return False
        for i in through:
            p = latest[i]
            pool = self._pools[p.path_id] = _PathPool(self._pools[p.path_id].route)
            pool.add(p, self.pool.epochs)
        return True


def _through(p: PathEvidence, components: set[str]) -> bool:
    return bool(components) and not (components.isdisjoint(p.forward) and components.isdisjoint(p.reverse or ()))


def _crosses(p: PathEvidence, component: str) -> bool:
    return component in p.forward or (p.reverse is not None and component in p.reverse)
