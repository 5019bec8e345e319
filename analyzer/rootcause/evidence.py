"""Evidence for root-cause inference: one `Epoch` (analyzer.rootcause.model) per closed interval,
built from what the analyzer's `WindowStore` holds.

For every path (source, target, slice, kind) the epoch carries the newest window that ended by
the store's `judged_through_ns`, the components its probes crossed, and its healthy baseline.
A path without a window in the last `STALE_INTERVALS` intervals is left out (it has nothing to
say about now), and so are all the paths of an agent none of whose windows reached the newest
interval any agent shipped for (an agent cut off or stopped, not yet silent for long), except
when its agent is silent: then it comes with nothing sent, so that
the agent's probe-host hint names the slices it measures. Choices:

- Components come from traces (PathObservations). Hop addresses are named through a name book:
  declared names, a plain address -> site mapping (xnetmon.lab_sites makes one from the lab's
  topology file: every site's loopback, host and link addresses), and the target addresses
  agents probe under a site's name. Unknown addresses stay addresses. Silent hops are skipped,
  so the link joins the answering neighbours; the names and links come from
  analyzer.traced_links, as GET /topology's do. A trace that did not reach its target does not
  replace the last one that did: during an outage the failing path still crossed what it
  crossed before. Nor does a trace whose answering hops are the known route's with some silent
  (trace probes lost on a lossy link): only a route that differs is a path change.
- A path never traced is left out: blaming the ends of a path whose middle is unknown would
  accuse healthy sites.
- Pseudo-components as the model says: "host:<source>" first on every path, "service:<target>"
  last on STAMP paths (a user-space reflector answers them; the kernel answers echo).
- The reverse path is the trace the target's agent made towards the source in the same slice
  (agents probe each other); None when there is none. A trace's source may be the agent's
  address (agents trace from it): it is named like any hop.
- Baseline delay and jitter: medians of the last `BASELINE_WINDOWS` healthy windows (no loss,
  delay not above the baseline by more than `HEALTHY_SLACK`), so the baseline is frozen while the
  path is degraded. None until `BASELINE_MIN_WINDOWS` healthy windows were seen.
- A path change is a new fingerprint of a reached trace, forward or back. The path then counts
  as changed for `CHANGE_HOLD_EPOCHS` epochs (an event must be visible longer than one interval),
  with the route it left (`previous_forward` / `previous_reverse`) and the delay step against the
  old baseline; after that the new route is the normal one and its baseline is learnt afresh.
- Host health from the agents' self-telemetry (CollectorHealth): unhealthy when the agent has not
  shipped for `SILENT_INTERVALS` intervals (a dead or frozen agent), its scheduling lag p99 is
  above `MAX_LAG_S`, at least `SEND_ERROR_SHARE` of the probes it sent since the previous
  epoch failed to leave (a few failing is the network: no route to one target), or its
  sockets dropped at least `SOCKET_DROP_SHARE` of that many replies. Every agent silent at
  once blames none of them (the analyzer's intake or their shared host stalled: a warning).
- Losses an agent counts as its own are not the network's: replies its sockets dropped (a
  busy host) since the previous epoch are taken off its paths' losses, the most lossy
  first, before inference sees them, so that a loaded agent is neither a gray-loss
  `probe-host` nor a lossy link. Refused sends are not: the kernel refuses a send when the
  network has no route, which is the network's loss (a link down).
- Agents ship over the network they measure, so a silent agent
  whose site the paths towards it show unreachable or slow (loss of `EXCUSING_LOSS`, or a
  delay above the baseline) is not blamed: the network is.

Jitter is the window's RFC 5481 PDV p99 (the SLA's delay-variation measure), delay its RTT median.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from analyzer.rootcause.model import Epoch, HostHealth, PathEvidence, link_name
from analyzer.traced_links import by_canonical_address, canonical, hop_names, name_of, traced_route
from collector.contract.records import PathKey, PathObservation, PathWindow

log = logging.getLogger(__name__)

STALE_INTERVALS = 3
SILENT_INTERVALS = 2  # agents ship every interval: two without a shipment is a silent agent
BASELINE_WINDOWS = 30
BASELINE_MIN_WINDOWS = 3
HEALTHY_SLACK = (1.5, 0.002)  # healthy delay: at most baseline x 1.5 + 2 ms (sub-ms lab paths jitter)
CHANGE_HOLD_EPOCHS = 5
MAX_LAG_S = 1.0  # a probe sent late still measures the network; a second late starts to miss windows
PRUNE_EVERY_EPOCHS = 100
SILENT = "no shipment for"
SEND_ERROR_SHARE = 0.5
# A loaded host drops a few replies on its sockets: discounted from its paths, not a fault of
# its own until they are a tenth of what it sent.
SOCKET_DROP_SHARE = 0.1
# Paths towards a silent agent's site losing this much excuse its silence: one probe in an
# interval of ten. A stopped agent's site still answers cleanly; trouble on the way there
# (the way its shipments go too) shows first as a lost probe or two.
EXCUSING_LOSS = 0.1


def _follows(nodes: Sequence[str], route: Sequence[str]) -> bool:
    """Whether `nodes` are `route`'s nodes in order with some left out (silent hops)."""
    remaining = iter(route)
    return all(node in remaining for node in nodes)


def _degraded(p: PathEvidence) -> bool:
    """Lossy or slower than its baseline: what excuses a silent agent behind it."""
    if p.loss >= EXCUSING_LOSS:
        return True
    if p.delay_s is None or p.baseline_delay_s is None:
        return False
    factor, slack = HEALTHY_SLACK
    return p.delay_s > p.baseline_delay_s * factor + slack


@dataclass(slots=True)
class _PathMemory:
    delays: deque = field(default_factory=lambda: deque(maxlen=BASELINE_WINDOWS))
    jitters: deque = field(default_factory=lambda: deque(maxlen=BASELINE_WINDOWS))
    baseline_delay: float | None = None
    baseline_jitter: float | None = None
    change_mark: tuple = (None, None)  # when its forward and reverse routes last changed
    was_changed: bool = False
    delay_before_change: float | None = None


@dataclass(slots=True)
class _Route:
    """The last reached trace of one (source, target, slice), named."""

    observation: PathObservation  # the trace itself: the store hands out the same object until a new one
    fingerprint: str
    nodes: tuple[str, ...]
    components: tuple[str, ...]  # nodes and links, source first
    previous: tuple[str, ...] = ()  # the components of the route this one replaced
    changed_at: int | None = None  # the epoch that saw it replace another


class EvidenceBuilder:
    """Turns the store's state into one Epoch per closed interval; keeps baselines and routes
    between epochs (call `build` once per interval, in order)."""

    def __init__(
        self, store, declared_names: Mapping[str, str] | None = None, clock: Callable[[], int] = time.time_ns
    ) -> None:
        self.store = store
        self.declared = by_canonical_address(declared_names)
        self.clock = clock
        self.epochs = 0
        self._memory: dict[PathKey, _PathMemory] = {}
        self._routes: dict[tuple[str, str, str], _Route] = {}
        self._counters: dict[str, tuple[int, int, int]] = {}  # site -> (probes sent, send errors, socket drops)
        self._all_silent = False  # every agent was silent at the previous epoch (warned once)

    # -- routes -------------------------------------------------------------------------------

    def _update_routes(self, observations: Iterable[PathObservation], names: Mapping[str, str]) -> None:
        for o in observations:
            if not o.reached:
                continue
            # Agents trace from their source address: the site is the name of that address.
            source = name_of(o.source, names)
            key = (source, o.target, o.slice)
            known = self._routes.get(key)
            if known is not None and known.observation is o:
                continue
            fingerprint = o.fingerprint
            if known is not None and known.fingerprint == fingerprint:
                known.observation = o
                continue
            nodes = traced_route(o, names).nodes
            if known is not None and None in o.hops and _follows(nodes, known.nodes):
                known.observation = o  # probes lost on the way, not a new route
                continue
            components = [nodes[0]]
            for a, b in zip(nodes, nodes[1:]):
                components += [link_name(a, b), b]
            if known is None:
                self._routes[key] = _Route(o, fingerprint, nodes, tuple(components))
            else:
                self._routes[key] = _Route(
                    o, fingerprint, nodes, tuple(components), previous=known.components, changed_at=self.epochs
                )

    def _changed(self, route: _Route | None) -> bool:
        return (
            route is not None and route.changed_at is not None and self.epochs - route.changed_at < CHANGE_HOLD_EPOCHS
        )

    # -- one epoch ----------------------------------------------------------------------------

    def build(self, at_ns: int | None = None) -> Epoch:
        """The epoch ending at `at_ns` (default: the store's judged_through_ns)."""
        store = self.store
        at_ns = store.judged_through_ns if at_ns is None else at_ns
        interval_ns = store.interval_ns
        oldest_end = at_ns - STALE_INTERVALS * interval_ns
        agents = store.agents()
        sites = {a.site for a in agents}
        silent = self._silent(agents, interval_ns)
        own = self._own_counts(agents)
        latest = store.latest_windows()
        names = hop_names(self.declared, latest, sites)
        self.epochs += 1
        self._update_routes(store.observations(), names)
        # The target's agent's trace back to the source, by (agent site, named end, slice).
        back = {(source, route.nodes[-1], slice_): route for (source, _t, slice_), route in self._routes.items()}
        closed = []
        for w in latest:
            if w.end_ns > at_ns:  # already in an open interval: take the one that closed
                w = next((r for r in reversed(store.recent_windows(w.key)) if r.end_ns <= at_ns), None)
                if w is None:
                    continue
            closed.append(w)
        # An agent none of whose windows reached the newest interval others shipped for is
        # cut off or stopped (it is not yet silent for long): its older windows describe the
        # network before the trouble and would clear the components now failing.
        newest: dict[str, int] = {}
        for w in closed:
            newest[w.key.source] = max(newest.get(w.key.source, 0), w.end_ns)
        freshest = max(newest.values(), default=0)
        paths = []
        for w in closed:
            measured = w.end_ns > oldest_end and newest[w.key.source] >= freshest
            if not measured and w.key.source not in silent:
                continue
            evidence = self._path(w, names, sites, back, measured)
            if evidence is not None:
                paths.append(evidence)
        # An agent whose site the network does not reach well cannot ship either: its silence is
        # the network's doing (the paths towards its site show it), not its host's.
        paths = _discount_own_losses(paths, own)
        excused = {p.target_site for p in paths if p.sent and p.target_site in silent and _degraded(p)}
        if excused:
            silent = {site: s for site, s in silent.items() if site not in excused}
            paths = [p for p in paths if p.sent or p.source not in excused]
        if self.epochs % PRUNE_EVERY_EPOCHS == 0:  # paths the store forgot: keep memory bounded
            known = set(store.path_keys())
            for key in [k for k in self._memory if k not in known]:
                del self._memory[key]
        return Epoch(tuple(paths), self._hosts(agents, silent, own), at_ns)

    def _path(
        self, w: PathWindow, names: Mapping[str, str], sites: set[str], back: Mapping, measured: bool
    ) -> PathEvidence | None:
        key = w.key
        route = self._routes.get((key.source, key.target, key.slice))
        if route is None:
            return None
        target_site = names.get(canonical(w.target_address)) or (key.target if key.target in sites else None)
        ends = (f"host:{key.source}",), (f"service:{key.target}",) if key.kind == "stamp" else ()
        reverse_route = back.get((target_site, key.source, key.slice)) if target_site else None
        path_id = f"{key.source}>{key.target}/{key.slice}/{key.kind}"
        reverse = None if reverse_route is None else reverse_route.components
        if not measured:
            # A silent agent's path: nothing measured this epoch, but it names the slices the
            # agent's trouble touches (inference sets an unhealthy host's paths aside).
            return PathEvidence(
                path_id,
                key.source,
                key.target,
                target_site,
                key.slice,
                (*ends[0], *route.components, *ends[1]),
                reverse,
                sent=0,
                lost=0,
            )
        memory = self._memory.get(key)
        if memory is None:
            memory = self._memory[key] = _PathMemory()
        delay = None if w.rtt_p50_ns is None else w.rtt_p50_ns / 1e9
        jitter = None if w.pdv_p99_ns is None else w.pdv_p99_ns / 1e9
        forward_changed, reverse_changed = self._changed(route), self._changed(reverse_route)
        changed = forward_changed or reverse_changed
        mark = (route.changed_at, None if reverse_route is None else reverse_route.changed_at)
        if changed and mark != memory.change_mark:  # a new change: the delay step is against the old baseline
            memory.delay_before_change = memory.baseline_delay
        memory.change_mark = mark
        if memory.was_changed and not changed:  # the new route is the normal one now: learn it afresh
            memory.delays.clear()
            memory.jitters.clear()
            memory.baseline_delay = memory.baseline_jitter = None
        memory.was_changed = changed
        delta = None
        if changed and delay is not None and memory.delay_before_change is not None:
            delta = delay - memory.delay_before_change
        self._learn(memory, w, delay, jitter)
        directional = key.kind == "stamp" and w.lost_unknown == 0
        return PathEvidence(
            path_id=path_id,
            source=key.source,
            target=key.target,
            target_site=target_site,
            slice=key.slice,
            forward=(*ends[0], *route.components, *ends[1]),
            reverse=reverse,
            sent=w.sent,
            lost=w.lost,
            forward_lost=w.lost_forward if directional else None,
            reverse_lost=w.lost_reverse if directional else None,
            delay_s=delay,
            baseline_delay_s=memory.baseline_delay,
            jitter_s=jitter,
            baseline_jitter_s=memory.baseline_jitter,
            path_changed=changed,
            delay_delta_s=delta,
            previous_forward=(*ends[0], *route.previous, *ends[1]) if forward_changed else None,
            previous_reverse=reverse_route.previous if reverse_changed and reverse_route is not None else None,
        )

    @staticmethod
    def _learn(memory: _PathMemory, w: PathWindow, delay: float | None, jitter: float | None) -> None:
        if w.sent == 0 or w.lost or delay is None:
            return
        if memory.baseline_delay is not None:
            factor, slack = HEALTHY_SLACK
            if delay > memory.baseline_delay * factor + slack:
                return  # degraded: the baseline stays what it was
        memory.delays.append(delay)
        if jitter is not None:
            memory.jitters.append(jitter)
        if len(memory.delays) >= BASELINE_MIN_WINDOWS:
            memory.baseline_delay = statistics.median(memory.delays)
            memory.baseline_jitter = statistics.median(memory.jitters) if memory.jitters else None

    # -- hosts --------------------------------------------------------------------------------

    def _silent(self, agents, interval_ns: int) -> dict[str, float]:
        """Agents without a shipment for `SILENT_INTERVALS` intervals: site -> seconds silent.
        Every agent (two or more) silent at once says nothing of any of them: this analyzer's
        intake, or the machine they all run on, stalled. That is a warning in the log, and
        none of them is silent."""
        now = self.clock()
        silent = {}
        for agent in agents:
            silent_s = (now - agent.last_batch_ns) / 1e9
            if silent_s > SILENT_INTERVALS * interval_ns / 1e9:
                silent[agent.site] = silent_s
        everyone = len(silent) >= 2 and len(silent) == len(agents)
        if everyone and not self._all_silent:
            log.warning("every agent (%d) silent at once: the analyzer's intake or their host stalled", len(silent))
        self._all_silent = everyone
        return {} if everyone else silent

    def _own_counts(self, agents) -> dict[str, tuple[int, int, int]]:
        """Per agent site: (probes sent, send errors, socket drops) since the previous epoch,
        for agents whose counters were seen then too."""
        own = {}
        for agent in agents:
            health = agent.health
            if health is None:
                continue
            counters = (health.probes_sent_total, health.send_errors_total, health.socket_drops_total)
            before = self._counters.get(agent.site)
            self._counters[agent.site] = counters
            if before is not None:
                sent, errors, drops = (max(0, now - then) for now, then in zip(counters, before))
                own[agent.site] = (sent, errors, drops)
        return own

    def _hosts(
        self, agents, silent: Mapping[str, float], own: Mapping[str, tuple[int, int, int]]
    ) -> tuple[HostHealth, ...]:
        hosts = []
        for agent in agents:
            problems = []
            if agent.site in silent:
                problems.append(f"{SILENT} {silent[agent.site]:.1f} s")
            health = agent.health
            if health is not None:
                lag_s = health.scheduling_lag_p99_ns / 1e9
                if lag_s > MAX_LAG_S:
                    problems.append(f"scheduling lag p99 {lag_s:.2f} s")
            if agent.site in own:
                sent, errors, drops = own[agent.site]
                # Some sends fail when the network has no route to a target: that is the
                # network's doing. An agent failing most of its sends is in trouble itself.
                if errors > 0 and errors >= sent * SEND_ERROR_SHARE:
                    problems.append(f"send errors {errors} of {sent} probes since the last interval")
                if drops > 0 and drops >= sent * SOCKET_DROP_SHARE:
                    problems.append(f"socket drops {drops} of {sent} probes since the last interval")
            hosts.append(HostHealth(agent.site, not problems, "; ".join(problems)))
        return tuple(hosts)


def _discount_own_losses(paths: list[PathEvidence], own: Mapping[str, tuple[int, int, int]]) -> list[PathEvidence]:
    """Paths with the losses their agent counted as its own taken off (see the module docstring)."""
    left = {site: drops for site, (_sent, _errors, drops) in own.items() if drops}
    if not left:
        return paths
    order = sorted(range(len(paths)), key=lambda i: (-paths[i].lost, paths[i].path_id))
    discounted = list(paths)
    for i in order:
        p = paths[i]
        budget = left.get(p.source, 0)
        if budget <= 0 or p.lost <= 0:
            continue
        taken = min(budget, p.lost)
        left[p.source] = budget - taken
        # dropped replies were lost on the way back, as far as the reflector's numbers tell
        back = min(taken, p.reverse_lost or 0)
        discounted[i] = replace(
            p,
            lost=p.lost - taken,
            reverse_lost=None if p.reverse_lost is None else p.reverse_lost - back,
        )
    return discounted
