"""The inference engine: one epoch of path evidence in, a ranked list of diagnoses out.

Stateless and deterministic: the same epoch gives the same diagnoses whatever the order
of its paths (ties are broken by component name). First and last seen, and clearing, are
the caller's (analyzer.rootcause.hints).

Stages, each over the rows of `observations` (a STAMP path split by direction is two rows):

1. Host self-telemetry: an unhealthy agent is a `probe-host` diagnosis at once, and its
   paths take no part in localisation (they would blame the network for the host). When
   every agent (two or more) is unhealthy at once, that is one fact, not one fault per
   agent: the machine they share, or the analyzer's intake, stalled. It is one diagnosis
   naming them all, at `SHARED_STALL_CONFIDENCE`.
2. Hard failures: Boolean tomography, the greedy set cover of Tomo / SCFS
   (Duffield; `boolean`). Bad rows lost (nearly) every probe (`failed_loss`); rows that
   lost less than `good_loss` clear their components; rows in between are partial loss,
   left to the next stage, and so is a class that failed on fewer than half its rows. Per slice, so a component that
   blackholes one slice is not cleared by another slice's healthy rows; classes found in
   several slices are merged afterwards. A link class is named both ways when every probe
   of the slices hit through the other direction crossed the class too and lost: a probe
   that lost everything brought nothing back to split its loss by direction.
3. Gray loss, all slices together: loss-rate tomography by non-negative least squares on
   -log(1 - loss) (NetBouncer, Tan et al., NSDI'19; `lossrate`) over the rows the hard stage
   did not explain, with a Poisson test against background loss for every candidate
   before and after explaining away. All slices together because a 0.1% loss needs every
   probe through the link to be seen at all; the slices it touches are found afterwards by
   a per-slice test.
4. Delay steps: the same Boolean cover (across slices, then per slice) over round-trip rows (RTT crosses both
   directions), bad when the median RTT rose by `delay_step_s` (or `delay_jitter_factor`
   baseline jitters) above its baseline, good when it stayed within half of that. A delay
   class that overlaps a loss finding is that finding's delay (congestion), not a second fault,
   and so is the delay of a path through a loss finding in one of its slices (left out).
5. Path changes: the greedy cover again, over the changed paths with the components each
   left (from `previous_forward` / `previous_reverse`); without them, the changed paths'
   sources are named.

Pseudo-components ("host:", "service:") are candidates in every stage only when their
counterpart paths are healthy in every slice: for "host:S" the paths towards S from other agents (they
cross S's links but not its agent), for "service:S" the paths from S's agent (they cross
S's links but not its reflector). Lossy or slow counterparts mean the trouble is in the
network near S, and a real component explains it. Where both could explain the same
failed rows, the cover prefers the real one (`boolean`).

Classification of a localised class, first match wins: a class of `host:` members only is
`probe-host`, of `service:` members only `reflector-down` (a class mixing them with nodes or
links is classified by its nodes and links, the pseudo members kept because no probe splits
them off, as its evidence says: a county cut off behind its only link loses its reflector's
answers with it); degraded in some slices while the other slices through the same class show
RTT or jitter up without loss is `congestion` (the link's queue is full and the scheduler
protects some slices' shares, not their delay) when that rise stands out from the paths
elsewhere, degraded in some slices while the others are healthy in loss and delay is
`slice-isolation`, and when the others' delay is up through the class but no more than
elsewhere the evidence cannot tell the two: `congestion|slice-isolation`; a hard failure of a class with a
node in it is `node-down`, else `link-down`; gray loss with RTT and jitter up on the same
paths is `congestion`; gray loss on directed links whose opposite directions are probed and
clean is `one-direction`; other gray loss is `link-loss`; a delay step alone `latency-shift`.
A gray-loss class of one node whose every row crosses one of the two directions of a link
at it (a county probed only through its uplink) names that link's two directions with it:
the same loss on both directions gives every row the same rate, and the fit, preferring one
column to two, kept the node. One-direction is a kind of its own only for partial loss: a
link that is down in one direction is still `link-down` (that is what needs acting on), with
the direction named in the evidence.

Confidence grows with the evidence (bad paths explained, or how far below `alpha` the loss
test went) and shrinks with ambiguity (each extra member of the class costs a quarter).
Anything not significant is never reported, so a healthy epoch gives [].
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import stats

from analyzer.rootcause.boolean import cover_all_then_per_slice
from analyzer.rootcause.lossrate import GrayFinding, localise_gray
from analyzer.rootcause.model import CONGESTION_OR_ISOLATION, Diagnosis, Epoch, PathEvidence
from analyzer.rootcause.observations import (
    BOTH,
    FORWARD,
    PSEUDO_PREFIXES,
    REVERSE,
    Observations,
    loss_observations,
    round_trip_observations,
)
from analyzer.rootcause.pathchange import path_change_diagnoses
from analyzer.rootcause.significance import poisson_tail
from analyzer.rootcause.wording import ambiguity, describe, percent


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Thresholds; the defaults suit the lab and the national simulation (bench/rootcause)."""

    # loss ratio each directed link may have without blame (the simulation's background is 1e-4)
    background_loss_per_link: float = 1e-4
    # hard failure: a row lost at least this share of its probes (with at least min_failed_sent sent);
    # a down component passes nothing, so anything that lets a few probes through is partial loss
    failed_loss: float = 0.98
    min_failed_sent: int = 5
    # a row that lost less than this share clears its components of a hard failure (rows in
    # between, e.g. behind an agent losing 90%, neither need explaining nor clear anyone)
    good_loss: float = 0.5
    # a hard-failure class must have failed on at least this share of its rows in the slices it hit
    min_failed_share: float = 0.5
    # good rows a hard-failure class may lie on (0: strict Tomo; raise for flapping routes)
    good_tolerance: int = 0
    # gray loss: significance per component at most (the lab's hundred components: 1e-4 per epoch)
    alpha: float = 1e-6
    # gray loss: chance of a false finding per healthy epoch, shared among the components tested
    # (the national ~20,000 components: 1e-8 each; at 1e-6 each, 3.8 healthy epochs in 1,000 alarmed)
    epoch_alpha: float = 2e-4
    # gray loss: smallest excess loss ratio, and smallest number of excess losses, worth a diagnosis
    min_loss_rate: float = 2e-4
    min_excess_losses: float = 4.0
    # gray loss: test each link over both its directions' rows too (lossrate's 5.); the pooled
    # test does, where a faint loss on both directions is too weak in each alone
    pair_links: bool = False
    # delay step: RTT median above baseline by this much (or this many baseline jitters, if larger)
    delay_step_s: float = 0.003
    delay_jitter_factor: float = 4.0
    min_delay_paths: int = 2
    # congestion: jitter at least this multiple of baseline and this much above it
    jitter_rise: float = 2.0
    jitter_min_rise_s: float = 0.0005
    # a slice counts as healthy through a class when its losses are this unlikely under the fault's rate
    slice_healthy_alpha: float = 1e-3
    # congestion: at least this share (and `min_delay_paths`) of the loss-free slices' paths through
    # the class is slower or jitterier. A quarter, not a majority: on the lab's full 2 Mbit/s link
    # the protected slices' RTT median did not move and their PDV p99 rose 2-10x on only a
    # quarter to a half of their paths per interval (10 probes a path)
    congestion_share: float = 0.25
    # ... and more of them than of the paths elsewhere, at this significance (Fisher, one-sided)
    congestion_alpha: float = 0.01
    # a pseudo-component's counterpart paths are unhealthy when their losses are this unlikely
    # under background, or when this share of them is slower than their baseline
    counterpart_alpha: float = 1e-3
    counterpart_slow_share: float = 0.5
    # gray loss on a host or reflector alone below this rate is its own drops under load (a busy
    # user-space reflector or agent drops a few datagrams), not a fault worth a hint
    pseudo_min_loss: float = 0.15


_PRECEDENCE = (
    "probe-host",
    "reflector-down",
    "slice-isolation",
    "node-down",
    "link-down",
    "congestion",
    CONGESTION_OR_ISOLATION,
    "one-direction",
    "link-loss",
    "latency-shift",
    "path-change",
)


def diagnose(epoch: Epoch, config: EngineConfig = EngineConfig()) -> list[Diagnosis]:
    paths = epoch.paths
    diagnoses: list[Diagnosis] = []
    unhealthy = {h.site: h for h in epoch.hosts if not h.healthy}
    diagnoses += _host_diagnoses(paths, unhealthy, len(epoch.hosts))
    if paths:
        context = _context(paths, unhealthy, config)
        loss_findings = context.hard_failures() + context.gray_losses()
        diagnoses += loss_findings
        diagnoses += context.delay_steps(loss_findings)
        diagnoses += path_change_diagnoses(paths, unhealthy)
    return sorted(diagnoses, key=lambda d: (-d.confidence, _PRECEDENCE.index(d.kind), d.suspects))


def gray_losses(epoch: Epoch, config: EngineConfig = EngineConfig()) -> list[Diagnosis]:
    """Stage 3 alone, over what stage 2 (hard failures) left: the partial-loss findings of an
    epoch whose counts were pooled over several intervals (analyzer.rootcause.pooling). Hard
    failures, delay steps and path changes are the single interval's to tell."""
    if not epoch.paths:
        return []
    context = _context(epoch.paths, {h.site for h in epoch.hosts if not h.healthy}, config)
    context.hard_failures()  # marks the rows they explain, so the gray stage leaves them alone
    return context.gray_losses()


def _context(paths: tuple[PathEvidence, ...], unhealthy_sites, config: EngineConfig) -> _Context:
    observations = loss_observations(paths, config.background_loss_per_link)
    return _Context(paths, observations, _rows_from(observations, paths, unhealthy_sites), config)


SHARED_STALL_CONFIDENCE = 0.5


def _host_diagnoses(paths: tuple[PathEvidence, ...], unhealthy: dict, hosts: int) -> list[Diagnosis]:
    if len(unhealthy) >= 2 and len(unhealthy) == hosts:
        reasons = sorted({h.reason or "no reason given" for h in unhealthy.values()})
        return [
            Diagnosis(
                "probe-host",
                tuple(f"host:{site}" for site in sorted(unhealthy)),
                tuple(sorted({p.slice for p in paths})),
                SHARED_STALL_CONFIDENCE,
                (
                    f"every agent ({len(unhealthy)}) reports itself unhealthy at once ({'; '.join(reasons[:3])}): "
                    "one cause they share, the machine they run on or the analyzer's intake, not a fault of each",
                ),
            )
        ]
    found = []
    for site, health in sorted(unhealthy.items()):
        slices = tuple(sorted({p.slice for p in paths if p.source == site}))
        found.append(
            Diagnosis(
                "probe-host",
                (f"host:{site}",),
                slices,
                0.9,
                (f"agent on {site} reports itself unhealthy: {health.reason or 'no reason given'}",),
            )
        )
    return found


def _rows_from(observations: Observations, paths: tuple[PathEvidence, ...], sites) -> np.ndarray:
    if not sites:
        return np.zeros(len(observations.sent), dtype=bool)
    from_site = np.fromiter((p.source in sites for p in paths), dtype=bool, count=len(paths))
    return from_site[observations.path]


@dataclass
class _Context:
    paths: tuple[PathEvidence, ...]
    observations: Observations
    excluded: np.ndarray
    config: EngineConfig
    explained: np.ndarray = field(init=False)
    _delays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = field(init=False, default=None)

    allowed: np.ndarray = field(init=False)
    # slices a hard failure hit while other slices through it stayed healthy
    slice_limited: set[int] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        self.explained = np.zeros(len(self.observations.sent), dtype=bool)
        self.allowed = self._pseudo_allowed()

    # -- pseudo-components -----------------------------------------------------------------

    def _pseudo_allowed(self) -> np.ndarray:
        """Column mask: real components always, a pseudo-component when its counterpart
        paths are present and healthy (see the module's docstring). Without counterparts
        (no other agent probes S, or S's agent is cut off) nothing clears the network near S,
        so a class of pseudo-components only is not a candidate either."""
        obs, config = self.observations, self.config
        allowed = np.ones(len(obs.names), dtype=bool)
        pseudo = [(c, n) for c, n in enumerate(obs.names) if n.startswith(PSEUDO_PREFIXES)]
        if not pseudo:
            return allowed
        count = len(self.paths)
        # per path, over its rows: losses, background expectation, worst row loss
        lost = np.bincount(obs.path, obs.lost, count)
        expected = np.bincount(obs.path, obs.sent * obs.background, count)
        worst = np.zeros(count)
        np.maximum.at(worst, obs.path, obs.loss)
        usable = np.bincount(obs.path, ~self.excluded, count) > 0
        slice_of_path = np.zeros(count, dtype=np.int64)
        slice_of_path[obs.path] = obs.slice_of_row
        excess, threshold, _, _ = self._delay_arrays()
        slow = ~np.isnan(excess) & (excess >= threshold)
        known = ~np.isnan(excess)
        towards: dict[str, list[int]] = {}
        since: dict[str, list[int]] = {}
        for i, p in enumerate(self.paths):
            if not usable[i]:
                continue
            since.setdefault(p.source, []).append(i)
            if p.target_site is not None and p.target_site != p.source:
                towards.setdefault(p.target_site, []).append(i)
        slice_count = int(slice_of_path.max()) + 1
        # every pseudo-component's per-slice sums, tested in one call (thousands at national scale)
        owners, lost_sums, expected_sums = [], [], []
        for column, name in pseudo:
            site = name.split(":", 1)[1]
            counterparts = np.asarray((towards if name.startswith("host:") else since).get(site, ()), dtype=np.int64)
            if len(counterparts) == 0 or (worst[counterparts] >= config.good_loss).any():
                allowed[column] = False
                continue
            measured = int(known[counterparts].sum())
            if measured and int(slow[counterparts].sum()) >= config.counterpart_slow_share * measured:
                allowed[column] = False
                continue
            # slice by slice: a loss of one slice near S is not cleared by the other slices' health
            slice_of = slice_of_path[counterparts]
            present = np.bincount(slice_of, minlength=slice_count) > 0
            lost_sums.append(np.bincount(slice_of, lost[counterparts], slice_count)[present])
            expected_sums.append(np.bincount(slice_of, expected[counterparts], slice_count)[present])
            owners.append(np.full(int(present.sum()), column))
        if owners:
            tails = poisson_tail(np.concatenate(lost_sums), np.concatenate(expected_sums))
            allowed[np.concatenate(owners)[tails < config.counterpart_alpha]] = False
        return allowed

    def _queue_kind(self, through: np.ndarray, degraded: set[int]) -> tuple[str, str | None]:
        """A class that degrades some slices while the others through it lost nothing: is it a
        full link, or one slice's class starved? A full link's scheduler protects the other
        slices' shares, not their delay: their RTT or jitter rises against their baseline on at
        least `congestion_share` of their paths through the class. A starved class leaves the
        other slices' delay alone (`slice-isolation`). Congestion needs that rise to stand out
        from the paths elsewhere, clearly (by `congestion_share`) and significantly (one-sided
        Fisher test below `congestion_alpha`): a loaded probing host slows every path, and a
        few paths of either kind up by chance prove nothing. When the other slices' delay is up
        through the class but not told apart from elsewhere, the probes cannot tell the two:
        the kind is then both (`CONGESTION_OR_ISOLATION`), never a guess that flips from one
        interval to the next."""
        obs, config = self.observations, self.config
        excess, _, _, _ = self._delay_arrays()
        paths = np.unique(obs.path[through[~np.isin(obs.slice_of_row[through], list(degraded))]])
        known = paths[~np.isnan(excess[paths])]
        if len(known) == 0:
            return "slice-isolation", None
        up = self._delay_up(known)
        if up.sum() < max(config.min_delay_paths, config.congestion_share * len(known)):
            return "slice-isolation", None
        elsewhere = np.setdiff1d(np.flatnonzero(~np.isnan(excess)), np.unique(obs.path[through]))
        up_elsewhere = self._delay_up(elsewhere)
        share, share_elsewhere = float(up.mean()), float(up_elsewhere.mean()) if len(elsewhere) else 0.0
        _, p_value = stats.fisher_exact(
            np.asarray([[up.sum(), (~up).sum()], [up_elsewhere.sum(), (~up_elsewhere).sum()]], dtype=np.int64),
            alternative="greater",
        )
        counts = (
            f"{int(up.sum())} of {len(known)} paths of the other slices through the same components show "
            f"RTT (median +{float(np.median(excess[known])) * 1e3:.1f} ms) or jitter up without loss, "
            f"{int(up_elsewhere.sum())} of {len(elsewhere)} paths elsewhere ({_p_value(float(p_value))})"
        )
        if share - share_elsewhere < config.congestion_share or p_value >= config.congestion_alpha:
            return CONGESTION_OR_ISOLATION, (
                f"{counts}: not clearly more than elsewhere, so the link's queue cannot be told from a starved "
                "slice class (nor from a loaded probing host): congestion or slice isolation"
            )
        return "congestion", f"{counts}: the link's queue, not one slice's share"

    def _delay_up(self, paths: np.ndarray) -> np.ndarray:
        """Per path (of known delay): slower than its baseline, or jitterier."""
        config = self.config
        excess, threshold, jitter, baseline_jitter = self._delay_arrays()
        slower = excess[paths] >= threshold[paths]
        jitterier = (
            ~np.isnan(jitter[paths])
            & ~np.isnan(baseline_jitter[paths])
            & (jitter[paths] >= config.jitter_rise * np.nan_to_num(baseline_jitter[paths]))
            & (jitter[paths] - np.nan_to_num(baseline_jitter[paths]) >= config.jitter_min_rise_s)
        )
        return slower | jitterier

    # -- stage 2: hard failures ------------------------------------------------------------

    def hard_failures(self) -> list[Diagnosis]:
        obs, config = self.observations, self.config
        loss = obs.loss
        usable = ~self.excluded
        failed = usable & (loss >= config.failed_loss) & (obs.sent >= config.min_failed_sent)
        if not failed.any():
            return []
        good = usable & (loss < config.good_loss)
        found = []
        for columns in cover_all_then_per_slice(obs, failed, good, config.good_tolerance, self.allowed):
            through = obs.rows_of(columns[0])
            rows = through[failed[through]]
            slice_ids = {int(s) for s in np.unique(obs.slice_of_row[rows])}
            if len(rows) < config.min_failed_share * len(self._in_slices(through, slice_ids)):
                continue  # mostly partial loss around it: the loss-rate stage explains it better
            masked = self._other_directions_masked(columns, rows, slice_ids)
            # every row of a hit slice through a down class (or a direction named with it) is
            # its doing, whatever the row lost
            self.explained[self._in_slices(self._rows_with(through, masked), slice_ids)] = True
            diagnosis = self._hard_diagnosis(columns, masked, rows, slice_ids, good)
            if diagnosis.kind in ("slice-isolation", "congestion", CONGESTION_OR_ISOLATION):
                self.slice_limited |= slice_ids
            found.append(diagnosis)
        return found

    def _other_directions_masked(
        self, columns: tuple[int, ...], failed_rows: np.ndarray, slice_ids: set[int]
    ) -> tuple[int, ...]:
        """For a class of links, the other directions that every probe of the slices hit
        crossed only together with the class, and lost: a probe that lost everything brought
        nothing back to split its loss by direction, so such a direction may be down too or
        not, and no probe tells. Named with the class, as one link both ways, rather than
        left out by the cover's tie-break (the other slices' rows, split by direction, are
        what made the two directions two classes, and they say nothing about this fault)."""
        obs = self.observations
        if not all(_is_link(obs.names[c]) for c in columns):
            return ()
        masked = []
        for column in columns:
            other = obs.opposite_of(column)
            if other is None or other in columns:
                continue
            in_hit_slices = self._in_slices(obs.rows_of(other), slice_ids)
            if len(in_hit_slices) and np.isin(in_hit_slices, failed_rows).all():
                masked.append(other)
        return tuple(masked)

    def _in_slices(self, rows: np.ndarray, slice_ids: set[int]) -> np.ndarray:
        return rows[np.isin(self.observations.slice_of_row[rows], list(slice_ids))]

    def _rows_with(self, class_rows: np.ndarray, masked: tuple[int, ...]) -> np.ndarray:
        """A class's rows together with those of the other directions named with it."""
        if not masked:
            return class_rows
        return np.unique(np.concatenate([class_rows, *(self.observations.rows_of(c) for c in masked)]))

    def _hard_diagnosis(
        self,
        columns: tuple[int, ...],
        masked: tuple[int, ...],
        bad_rows: np.ndarray,
        slice_ids: set[int],
        good: np.ndarray,
    ) -> Diagnosis:
        """`columns` the class the cover chose, `masked` the other directions named with it."""
        obs = self.observations
        names = tuple(sorted(obs.names[c] for c in (*columns, *masked)))
        class_rows = obs.rows_of(columns[0])  # a class's members lie on the same rows
        through = self._rows_with(class_rows, masked)
        healthy_slices = {int(s) for s in np.unique(obs.slice_of_row[through[good[through]]])} - slice_ids
        slices = self._slice_names(slice_ids)
        kind = _pseudo_kind(names)
        queue_sentence = None
        if kind is None:
            if healthy_slices:
                kind, queue_sentence = self._queue_kind(through, slice_ids)
            elif any(_is_node(n) for n in names):
                kind = "node-down"
            else:
                kind = "link-down"
        class_names = tuple(obs.names[c] for c in columns)
        bad_paths = np.unique(obs.path[bad_rows])
        all_paths = np.unique(obs.path[class_rows])
        loss = float(obs.lost[bad_rows].sum() / obs.sent[bad_rows].sum())
        evidence = [
            f"{len(bad_paths)} of {len(all_paths)} paths through {describe(class_names)} lost {percent(loss)} "
            f"({self._directions(bad_rows)}); {self._elsewhere(through)}"
        ]
        if queue_sentence:
            evidence.append(queue_sentence)
        elif healthy_slices:
            evidence.append(f"healthy through the same components: {', '.join(self._slice_names(healthy_slices))}")
        if masked:
            evidence.append(
                f"{', '.join(obs.names[c] for c in masked)} named with it: every probe through "
                f"{'them' if len(masked) > 1 else 'it'} in {', '.join(slices)} also crossed the other direction "
                f"and lost everything, so none tells whether {'they are' if len(masked) > 1 else 'it is'} down too"
            )
        evidence += _class_sentence(class_names)
        confidence = (1.0 - 0.5 ** len(bad_paths)) * ambiguity(len(columns))
        return Diagnosis(kind, names, slices, round(confidence, 3), tuple(evidence))

    # -- stage 3: gray loss ----------------------------------------------------------------

    def gray_losses(self) -> list[Diagnosis]:
        """Gray loss, all slices pooled; then, when a finding (or a hard failure) turns out to
        hit some slices while others through it are healthy, again with each such slice fitted
        on its own: pooled, that slice's partial loss on the same link (the other direction,
        say) is diluted by the healthy slices' rows there and pinned on whatever smaller class
        its own rows share (a county, its host or reflector)."""
        active = ~self.excluded & ~self.explained
        findings = self._fit_gray(active, self.slice_limited)
        limited = set(self.slice_limited)
        for finding in findings:
            degraded, healthy = self._slice_scope(finding)
            if healthy:
                limited |= degraded
        if limited != self.slice_limited:
            findings = self._fit_gray(active, limited)
        obs = self.observations
        findings = [f for f in findings if not self._own_drops(f)]
        found_names = {obs.names[c] for f in findings for c in f.columns}
        return [self._gray_diagnosis(f, active, found_names) for f in findings]

    def _own_drops(self, finding: GrayFinding) -> bool:
        """A host's or reflector's partial loss too light for a fault: its own drops under load."""
        obs = self.observations
        if _pseudo_kind(tuple(obs.names[c] for c in finding.columns)) is None:
            return False
        sent = float(obs.sent[finding.rows].sum())
        return sent > 0 and float(obs.lost[finding.rows].sum()) / sent < self.config.pseudo_min_loss

    def _fit_gray(self, active: np.ndarray, limited: set[int]) -> list[GrayFinding]:
        obs, config = self.observations, self.config
        alone = np.isin(obs.slice_of_row, sorted(limited))
        opposite = obs.opposite_columns() if config.pair_links else None
        findings = localise_gray(
            obs,
            active & ~alone,
            config.alpha,
            config.min_loss_rate,
            config.min_excess_losses,
            self.allowed,
            config.epoch_alpha,
            opposite,
        )
        for slice_id in sorted(limited):
            for finding in localise_gray(
                obs,
                active & (obs.slice_of_row == slice_id),
                config.alpha,
                config.min_loss_rate,
                config.min_excess_losses,
                self.allowed,
                config.epoch_alpha,
                opposite,
            ):
                # scoped against every slice through the class, as the pooled findings are
                through = obs.rows_of(finding.columns[0])
                findings.append(replace(finding, rows=through[active[through]]))
        return findings

    def _gray_diagnosis(self, finding: GrayFinding, active: np.ndarray, found_names: set[str]) -> Diagnosis:
        obs, config = self.observations, self.config
        names = tuple(obs.names[c] for c in finding.columns)
        nodes = [c for c in finding.columns if _is_node(obs.names[c])]
        uplink = obs.links_both_ways_alike(nodes[0]) if len(nodes) == 1 else ()
        names += tuple(n for n in uplink if n not in names)  # the fit keeps the node (one column for both ways)
        degraded, healthy = self._slice_scope(finding)
        slices = self._slice_names(degraded)
        kind = _pseudo_kind(names)
        delay_sentence = None
        if kind is None:
            congested, delay_sentence = self._congested(finding.rows)
            if healthy:
                # checked before slice-isolation: a full link delays the slices it does not drop
                kind, delay_sentence = self._queue_kind(finding.rows, degraded)
            elif congested:
                kind = "congestion"
            elif self._one_direction(names, finding.rows, active, found_names):
                kind = "one-direction"
            else:
                kind = "link-loss"
        rows = finding.rows
        lossy = rows[obs.lost[rows] > obs.sent[rows] * obs.background[rows]]
        all_paths = np.unique(obs.path[rows])
        evidence = [
            f"{len(np.unique(obs.path[lossy]))} of {len(all_paths)} paths through {describe(names)} "
            f"lost {percent(finding.rate)} ({self._directions(rows)}): {finding.lost:.0f} probes lost "
            f"where {finding.expected:.1f} were expected ({_p_value(finding.p_value)}); {self._elsewhere(rows)}"
        ]
        if delay_sentence:
            evidence.append(delay_sentence)
        elif healthy:
            evidence.append(f"healthy through the same components: {', '.join(self._slice_names(healthy))}")
        if uplink:
            evidence.append(
                f"every probe through {obs.names[nodes[0]]} crosses {uplink[0]} or {uplink[1]}: the same loss "
                "on both directions of that link explains the same probes"
            )
        evidence += _class_sentence(names)
        strength = min(1.0, math.log10(max(finding.p_value, 1e-300)) / (2.0 * math.log10(config.alpha)))
        confidence = (0.5 + 0.5 * max(strength, 0.0)) * ambiguity(len(names))
        return Diagnosis(kind, names, slices, round(confidence, 3), tuple(evidence))

    def _slice_scope(self, finding: GrayFinding) -> tuple[set[int], set[int]]:
        """Slices whose rows through the class are degraded, and slices shown healthy: their
        losses are too few for the class's loss rate (a lower-tail test, so a slice is not
        called healthy merely for having few probes)."""
        obs, config = self.observations, self.config
        rows = finding.rows
        slice_ids = obs.slice_of_row[rows]
        present = [int(s) for s in np.unique(slice_ids)]
        if len(present) < 2:
            return set(present), set()
        sent = {s: float(obs.sent[rows][slice_ids == s].sum()) for s in present}
        lost = {s: float(obs.lost[rows][slice_ids == s].sum()) for s in present}
        base = {s: float((obs.sent[rows] * obs.background[rows])[slice_ids == s].sum()) for s in present}
        degraded = {s for s in present if poisson_tail(np.asarray([lost[s]]), np.asarray([base[s]]))[0] < 1e-3}
        if not degraded:
            return set(present), set()
        rate = min((lost[s] - base[s]) / sent[s] for s in degraded)
        healthy = {
            s
            for s in present
            if s not in degraded and stats.poisson.cdf(lost[s], base[s] + rate * sent[s]) < config.slice_healthy_alpha
        }
        if not healthy:
            return set(present), set()
        return set(present) - healthy, healthy

    def _one_direction(
        self, names: tuple[str, ...], suspect_rows: np.ndarray, active: np.ndarray, found_names: set[str]
    ) -> bool:
        obs = self.observations
        if not all(_is_link(n) for n in names):
            return False
        for name in names:
            a, b = name.split(">", 1)
            opposite = f"{b}>{a}"
            column = obs.column_of(opposite)
            if opposite in found_names or column is None:
                return False
            rows = obs.rows_of(column)
            # rows crossing both directions (echo) carry the suspect's own loss: only the others can clear
            rows = rows[active[rows] & ~np.isin(rows, suspect_rows)]
            if len(rows) == 0:
                return False
            lost = obs.lost[rows].sum()
            expected = (obs.sent[rows] * obs.background[rows]).sum()
            if poisson_tail(np.asarray([lost]), np.asarray([expected]))[0] < 1e-3:
                return False
        return True

    def _congested(self, rows: np.ndarray) -> tuple[bool, str | None]:
        excess, threshold, jitter, baseline_jitter = self._delay_arrays()
        paths = np.unique(self.observations.path[rows])
        known = paths[~np.isnan(excess[paths])]
        if len(known) == 0:
            return False, None
        rise = float(np.median(excess[known]))
        if rise < float(np.median(threshold[known])):
            return False, None
        with_jitter = known[~np.isnan(jitter[known]) & ~np.isnan(baseline_jitter[known])]
        if len(with_jitter) == 0:
            return False, None
        now, before = float(np.median(jitter[with_jitter])), float(np.median(baseline_jitter[with_jitter]))
        if now < before * self.config.jitter_rise or now - before < self.config.jitter_min_rise_s:
            return False, None
        return True, (
            f"RTT up {rise * 1e3:.1f} ms and jitter {now * 1e3:.1f} ms (baseline {before * 1e3:.1f} ms) "
            f"on {len(known)} of those paths"
        )

    # -- stage 4: delay steps --------------------------------------------------------------

    def _delay_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per path: RTT excess over baseline, the step that counts, jitter, baseline jitter (NaN: unknown)."""
        if self._delays is None:
            nan = math.nan
            config = self.config
            count = len(self.paths)
            excess = np.fromiter(
                (
                    (p.delay_s - p.baseline_delay_s)
                    if p.delay_s is not None and p.baseline_delay_s is not None and not p.path_changed
                    else nan
                    for p in self.paths
                ),
                dtype=np.float64,
                count=count,
            )
            jitter = np.fromiter(
                (nan if p.jitter_s is None else p.jitter_s for p in self.paths), dtype=np.float64, count=count
            )
            baseline_jitter = np.fromiter(
                (nan if p.baseline_jitter_s is None else p.baseline_jitter_s for p in self.paths),
                dtype=np.float64,
                count=count,
            )
            threshold = np.maximum(config.delay_step_s, config.delay_jitter_factor * np.nan_to_num(baseline_jitter))
            self._delays = (excess, threshold, jitter, baseline_jitter)
        return self._delays

    def delay_steps(self, loss_findings: list[Diagnosis]) -> list[Diagnosis]:
        excess, threshold, _, _ = self._delay_arrays()
        known = ~np.isnan(excess)
        if self.excluded.any():
            known &= ~np.bincount(self.observations.path[self.excluded], minlength=len(self.paths)).astype(bool)
        known &= ~self._through_findings(loss_findings)
        slow_paths = known & (excess >= threshold)
        if slow_paths.sum() < self.config.min_delay_paths:
            return []
        rtt = round_trip_observations(self.observations, np.flatnonzero(known), len(self.paths))
        slow = slow_paths[rtt.path]
        normal = excess[rtt.path] < threshold[rtt.path] / 2
        blamed = {name for d in loss_findings for name in d.suspects}
        found = []
        for columns in cover_all_then_per_slice(rtt, slow, normal, allowed=self.allowed):
            names = tuple(rtt.names[c] for c in columns)
            if blamed.intersection(names):
                continue  # the delay of a loss already found (congestion is judged there)
            diagnosis = self._delay_diagnosis(rtt, names, columns, slow, normal, excess)
            if diagnosis is not None:
                found.append(diagnosis)
        return found

    def _through_findings(self, findings: list[Diagnosis]) -> np.ndarray:
        """Per path: it crosses a loss finding's suspects in one of the finding's slices. Its delay
        is that finding's (a full queue delays what it does not drop), not a second fault: left
        out of the delay stage, else the cover pins it on whatever smaller class those slow
        paths share."""
        obs = self.observations
        through = np.zeros(len(self.paths), dtype=bool)
        for finding in findings:
            slice_ids = [i for i, name in enumerate(obs.slices) if name in finding.slices]
            for name in finding.suspects:
                column = obs.column_of(name)
                if column is not None:
                    rows = obs.rows_of(column)
                    through[obs.path[rows[np.isin(obs.slice_of_row[rows], slice_ids)]]] = True
        return through

    def _delay_diagnosis(self, rtt: Observations, names, columns, slow, normal, excess) -> Diagnosis | None:
        through = rtt.rows_of(columns[0])
        rows = through[slow[through]]
        slice_ids = {int(s) for s in np.unique(rtt.slice_of_row[rows])}
        healthy = {int(s) for s in np.unique(rtt.slice_of_row[through[normal[through]]])} - slice_ids
        if len(rows) < self.config.min_delay_paths:
            return None
        kind = _pseudo_kind(names) or ("slice-isolation" if healthy else "latency-shift")
        step = float(np.median(excess[rtt.path[rows]]))
        evidence = [
            f"RTT up {step * 1e3:.1f} ms (median) on {len(rows)} of {len(through)} paths through "
            f"{describe(names)}, without loss"
        ]
        if healthy:
            evidence.append(f"healthy through the same components: {', '.join(self._slice_names(healthy))}")
        evidence += _class_sentence(names)
        confidence = (1.0 - 0.5 ** len(rows)) * ambiguity(len(names))
        return Diagnosis(
            kind, names, tuple(sorted(rtt.slices[s] for s in slice_ids)), round(confidence, 3), tuple(evidence)
        )

    # -- wording helpers -------------------------------------------------------------------

    def _slice_names(self, slice_ids: Iterable[int]) -> tuple[str, ...]:
        return tuple(sorted(self.observations.slices[s] for s in slice_ids))

    def _directions(self, rows: np.ndarray) -> str:
        """Which legs the losses were measured on: STAMP splits out and back, echo cannot."""
        counts = np.bincount(self.observations.direction[rows], minlength=3)
        parts = [
            f"{counts[d]} {label}"
            for d, label in ((FORWARD, "outward"), (REVERSE, "return"), (BOTH, "round-trip"))
            if counts[d]
        ]
        return ", ".join(parts) + (" measurement" if len(rows) == 1 else " measurements")

    def _elsewhere(self, rows: np.ndarray) -> str:
        obs = self.observations
        other = np.ones(len(obs.sent), dtype=bool)
        other[rows] = False
        other &= ~self.excluded
        sent = float(obs.sent[other].sum())
        lost = float(obs.lost[other].sum())
        return f"other paths lost {percent(lost / sent if sent else 0.0)}"


def _pseudo_kind(names: tuple[str, ...]) -> str | None:
    """The host's or the reflector's kind, for a class of pseudo-components only: a class
    with a node or link in it is classified by those (the network cuts the host or reflector
    off; it is not the host's or reflector's fault)."""
    if not names or not all(n.startswith(PSEUDO_PREFIXES) for n in names):
        return None
    if any(n.startswith("host:") for n in names):
        return "probe-host"
    return "reflector-down"


def _is_link(name: str) -> bool:
    return ">" in name and not name.startswith(("host:", "service:"))


def _is_node(name: str) -> bool:
    return ">" not in name and not name.startswith(("host:", "service:"))


def _p_value(p: float) -> str:
    return f"p={p:.1e}" if p >= 1e-300 else "p<1e-300"


def _class_sentence(names: tuple[str, ...]) -> list[str]:
    if len(names) < 2:
        return []
    sentences = [f"end-to-end probes cannot tell apart: {', '.join(names)}"]
    pseudo = [n for n in names if n.startswith(PSEUDO_PREFIXES)]
    if pseudo and len(pseudo) < len(names):
        sentences.append(
            f"{', '.join(pseudo)} kept in the class only because every probe through it crosses the "
            f"network components too: classified by those (a site cut off cannot answer or ship)"
        )
    return sentences
