"""Root-cause inference of a partitioned analysis: the partitions' epochs
(analyzer.partial_evidence) assembled per interval into one epoch over every path, the
engine run over it, and the hints tracked and served as one analyzer's are.

An interval's epoch is complete once every partition has sent its epoch for it or a later
one (a partition's runner builds the newest closed interval, so it may skip one after a
stall; its later epoch says it will not come), or `grace_s` after the combiner first heard
of it (a partition down then counts as no paths, as silent agents do), or when more than
`MAX_WAITING_EPOCHS` wait (each holds every path's evidence: tens of MB at national scale).
Epochs complete in order; one older than the last completed is late: dropped and counted.

The union (`union_epoch`) is every partition's paths and hosts, with what a partition could
not know filled from the others: a path's reverse route (the trace its target's agent made
towards its source in the same slice, usually in another partition) is the forward route of
that agent's path in the slice, nodes and links only; and its target's site when the target
is a site with an agent elsewhere (a partition knows its own agents only). A reverse route
change another partition saw is not carried over: the path whose forward route changed
carries that change itself.

The engine runs on a thread of its own (`CombinedInference`), so the combiner's intake never
waits for it; when the engine is slower than the intervals, the newest complete epoch waits
and older ones are skipped (counted): the combiner then infers once per several intervals.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from analyzer.partial_evidence import PartitionEvidence
from analyzer.partials import MalformedReport
from analyzer.rootcause.hints import HintTracker
from analyzer.rootcause.model import Epoch, HostHealth, PathEvidence
from collector.system.loop_errors import LoopErrors

GRACE_S = 15.0  # as the slice intervals' (analyzer.combiner)
MAX_WAITING_EPOCHS = 4
PSEUDO_PREFIXES = ("host:", "service:")  # analyzer.rootcause.model's pseudo-components


def route_of(forward: tuple[str, ...]) -> tuple[str, ...]:
    """A path's forward components without its pseudo-components: nodes and links."""
    return tuple(name for name in forward if not name.startswith(PSEUDO_PREFIXES))


def union_epoch(parts: Iterable[Epoch], at_ns: int) -> Epoch:
    """One epoch over every partition's paths and hosts (see the module docstring)."""
    paths: dict[str, PathEvidence] = {}
    hosts: dict[str, HostHealth] = {}
    for part in parts:
        for p in part.paths:
            paths.setdefault(p.path_id, p)
        for h in part.hosts:
            hosts.setdefault(h.site, h)
    ordered = sorted(paths.values(), key=lambda p: p.path_id)
    agents = set(hosts) | {p.source for p in ordered}
    forward: dict[tuple[str, str, str], tuple[str, ...]] = {}  # (agent, far end, slice) -> its route
    for p in ordered:
        route = route_of(p.forward)
        if route:
            forward.setdefault((p.source, route[-1], p.slice), route)
    filled = []
    for p in ordered:
        target_site = p.target_site
        if target_site is None and p.target in agents:
            target_site = p.target
        reverse = p.reverse
        if reverse is None and target_site is not None:
            reverse = forward.get((target_site, p.source, p.slice))
        if target_site is not p.target_site or reverse is not p.reverse:
            p = replace(p, target_site=target_site, reverse=reverse)
        filled.append(p)
    return Epoch(tuple(filled), tuple(hosts[site] for site in sorted(hosts)), at_ns)


@dataclass(frozen=True, slots=True)
class CompleteEpoch:
    """The partitions' epochs of one interval, as decoded: the union is built by whoever
    infers it (`epoch()`), so the intake's thread does not, nor for an epoch skipped."""

    at_ns: int
    parts: tuple[PartitionEvidence, ...]  # in partition order

    def epoch(self) -> Epoch:
        return union_epoch((part.epoch() for part in self.parts), self.at_ns)


@dataclass(slots=True)
class _Waiting:
    first_heard_ns: int
    parts: dict[int, PartitionEvidence] = field(default_factory=dict)  # partition -> its epoch


class EpochAssembler:
    """The partitions' epochs of each interval, until it is complete (the module docstring)."""

    def __init__(
        self, partitions: int, interval_ns: int, grace_s: float = GRACE_S, max_waiting: int = MAX_WAITING_EPOCHS
    ) -> None:
        self.partitions = partitions
        self.interval_ns = interval_ns
        self.grace_ns = round(grace_s * 1e9)
        self.max_waiting = max_waiting
        self.refused = 0  # of another partition count or interval length
        self.late = 0  # for an interval already complete
        self.by_grace = 0  # completed without every partition's epoch
        self._newest = [-1] * partitions  # per partition: the newest epoch end it sent
        self._waiting: dict[int, _Waiting] = {}  # epoch end -> its parts
        self._done_through = -1

    def add(self, evidence: PartitionEvidence, now_ns: int) -> list[CompleteEpoch]:
        """Take one partition's epoch; the epochs it completes, oldest first. Raises
        MalformedReport when it does not belong to this analysis."""
        if evidence.partitions != self.partitions or evidence.interval_ns != self.interval_ns:
            self.refused += 1
            raise MalformedReport(
                f"evidence of partition {evidence.partition} of {evidence.partitions} at "
                f"{evidence.interval_ns} ns intervals, not of {self.partitions} at {self.interval_ns}"
            )
        at_ns = evidence.at_ns
        if at_ns <= self._done_through:
            self.late += 1
            return self.advance(now_ns)
        waiting = self._waiting.get(at_ns)
        if waiting is None:
            waiting = self._waiting[at_ns] = _Waiting(now_ns)
        waiting.parts[evidence.partition] = evidence
        self._newest[evidence.partition] = max(self._newest[evidence.partition], at_ns)
        return self.advance(now_ns)

    def advance(self, now_ns: int) -> list[CompleteEpoch]:
        """The epochs complete now, in order (past their grace, or beyond the bound, too)."""
        done = []
        while self._waiting:
            at_ns = min(self._waiting)
            waiting = self._waiting[at_ns]
            complete = all(newest >= at_ns for newest in self._newest)
            if not complete:
                if now_ns - waiting.first_heard_ns < self.grace_ns and len(self._waiting) <= self.max_waiting:
                    break
                self.by_grace += 1
            del self._waiting[at_ns]
            self._done_through = at_ns
            done.append(CompleteEpoch(at_ns, tuple(waiting.parts[i] for i in sorted(waiting.parts))))
        return done

    def waiting(self) -> int:
        return len(self._waiting)


class CombinedInference:
    """The engine over the assembled epochs, on a thread of its own, and their hints
    (`hints()`, as `analyzer.service.RootCauseRunner.hints`). `add` and `advance` are called
    by the combiner's intake; `epochs` counts the epochs inferred, `skipped` those passed
    over for a newer one while the engine was busy."""

    RECENT_EPOCHS = 30

    def __init__(
        self,
        assembler: EpochAssembler,
        *,
        diagnose: Callable | None = None,
        errors: LoopErrors | None = None,
    ) -> None:
        if diagnose is None:
            from analyzer.rootcause.pooling import PooledDiagnoser

            diagnose = PooledDiagnoser()  # one per stream of intervals: it pools their counts
        self.assembler = assembler
        self.diagnose = diagnose
        self.tracker = HintTracker()
        self.errors = errors if errors is not None else LoopErrors()
        self.epochs = 0
        self.skipped = 0
        self.last_seconds = 0.0
        self.worst_seconds = 0.0
        self.last_epoch: Epoch | None = None
        self.recent: collections.deque = collections.deque(maxlen=self.RECENT_EPOCHS)
        self._next: CompleteEpoch | None = None
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="xnetmon-combiner-rootcause", daemon=True)
        self._thread.start()

    def hints(self):
        return self.tracker.hints()

    def add(self, evidence: PartitionEvidence, now_ns: int) -> None:
        """Raises MalformedReport when `evidence` is not of this analysis (counted)."""
        self._hand_over(self.assembler.add(evidence, now_ns))

    def advance(self, now_ns: int) -> None:
        self._hand_over(self.assembler.advance(now_ns))

    def _hand_over(self, epochs: list[CompleteEpoch]) -> None:
        if not epochs:
            return
        with self._ready:
            self.skipped += len(epochs) - 1 + (self._next is not None)
            self._next = epochs[-1]
            self._ready.notify()

    def _run(self) -> None:
        while True:
            with self._ready:
                while self._next is None and not self._stopping:
                    self._ready.wait()
                complete, self._next = self._next, None
                if self._stopping or complete is None:
                    return
            self.run_once(complete)

    def run_once(self, complete: CompleteEpoch) -> None:
        """The union of `complete` built and inferred; `last_seconds` times both."""
        started = time.perf_counter()
        diagnoses: tuple = ()
        # A bad epoch must not end inference: the next interval is another try.
        with self.errors.survive("rootcause", f"combined inference for the interval ending at {complete.at_ns}"):
            epoch = self.last_epoch = complete.epoch()
            diagnoses = tuple(self.diagnose(epoch))
            self.tracker.update(diagnoses, epoch.at_ns)
        self.epochs += 1
        self.last_seconds = time.perf_counter() - started
        self.worst_seconds = max(self.worst_seconds, self.last_seconds)
        self.recent.append((complete.at_ns, diagnoses, self.last_seconds))

    def stop(self) -> None:
        with self._ready:
            self._stopping = True
            self._ready.notify()
        self._thread.join(timeout=5)
