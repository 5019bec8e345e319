"""SLA verdicts: each slice's (and each path's) objectives judged interval by interval.

Input is `analyzer.sla.series.IntervalStats`, one interval of one slice (its paths' windows
summed) or of one path. Policies are `analyzer.sla.policies.SlaPolicy` (re-exported here).

Per interval, each objective is met, violated, or not judged (`met is None`: no data):

- `two-way-delay-percentile`: from the summed RTT histogram. The bound is an RTT bucket
  bound, so "p99 <= 150 ms" is read exactly as "at least 99% of replies fell in buckets
  at or below 150 ms". `observed` is the smallest bucket bound holding the percentile
  (`math.inf` when it lies above the largest bound, 1 s). No replies: not judged. Above
  the bound it is violated only when the replies above it are too many for the allowed
  1% to explain (analyzer.sla.resolution), else not judged: see "events" below.
- `one-way-delay-percentile` (p99): the worst path's forward or reverse one-way p99,
  whichever is larger, judged only when the worst clock error estimate is known and
  within `max_clock_error_s`; otherwise not judged, never guessed.
- `two-way-delay-variation-percentile` (p99): the worst path's RFC 5481 PDV p99 (delay
  above the window's minimum). Too few replies for a PDV: not judged.
- `two-way-packet-loss`: lost / sent <= bound; above it, violated only when the losses are
  too many for the bound to explain (analyzer.sla.resolution), else not judged. Nothing
  sent: not judged.
- `availability`: an interval's unavailable share is 1 when the interval's summed loss
  exceeds `unavailable_loss` (ITU-T Y.1540 / RFC 7680 practice), else the share of its
  reporting paths that exceeded it (`IntervalStats.unavailable_paths / paths`; the store
  builds IntervalStats with the policy's `unavailable_loss`). For one path that is 0 or
  1. Per interval the objective compares the available share with the bound; over the
  compliance window (what the verdict shows) it compares `1 - unavailable / W` with the
  bound, W being the window's length in intervals — measured like the error budget, so
  an early blip spends a little of the month's allowance instead of reading as 0%.

Events: loss and two-way delay bound a share of events (probes, replies). An interval whose
events cannot resolve the bound (160 probes against 0.1%: one lost probe reads 0.6%) is
not judged on them; its events are pooled with the next interval's and judged together,
until the pool resolves the bound or spans the shortest burn lookback (at least
`MIN_POOLED_INTERVALS`). `observed` is then the pool's, and a pool found in violation counts
as that many bad intervals (in the slot of its last). A steady loss above the bound
shows within a few intervals; one lost probe on a healthy path never fails an interval.

A slice interval sums its paths, so one bad path of many dilutes into the slice's delay
histogram and loss, while delay variation, one-way delay and availability answer for the
worst path. Paths missing from an interval simply do not count in it.

Over time (intervals arrive in order; an older or repeated one is ignored):

- An interval with probes is *judged*; it is *bad* when any judged objective is violated.
- Error budget: (1 - objective_ratio) * W bad intervals per compliance window;
  `error_budget_remaining = 1 - bad / allowed` (1 untouched, <= 0 spent).
- Burn rate over a lookback = (bad intervals in it / the lookback's length in intervals)
  / (1 - objective_ratio): over the whole length, so the lookback of a fresh tracker (or
  one with gaps) counts its unseen intervals as good, and one bad interval among the first
  few is one interval's burn, not a full window's. `warming` is True until the first burn
  window's long lookback has passed since the first interval with probes. Labels come
  from the durations ("1h", "5m", "30s", "500ms").
- Status of one interval (raw), judged at the interval's end:
  `breached` when a page burn window fires (long AND short lookback above its factor:
  1h & 5m > 14.4, 6h & 30m > 6 by default), the error budget is spent, or availability
  over the compliance window is below its bound; else `at-risk` when a ticket window
  fires (3d & 6h > 1) or the interval itself was bad; else `ok`; `no-data` for an
  interval without probes and for every interval slot that never arrived.
- Reported status: raw statuses through `analyzer.sla.hysteresis` — a change is reported
  only after `hysteresis_intervals` consecutive intervals support it, entering and
  leaving alike, so `no-data` is reported after that many intervals without probes.
  `since_ns` is when the reported status began. A new tracker reports `no-data` (since 0)
  until that many intervals with probes arrived.

`verdict(now_ns)` reads lookbacks ending at `now_ns`, which should be the end of the newest
interval the caller has closed (for any path), not the wall clock: slots between the
tracker's newest interval and `now_ns` count as intervals without data, so an interval
still being settled or shipped must not be counted as missing yet.

Memory (analyzer.sla.lookback): each lookback keeps at most 60 buckets of 16-bit counters and
the compliance window 60 floats more, whatever the interval count. With a default policy
at 10 s intervals a tracker holds 1,800 bytes of counters and about 5.3 KB in all, with its
objects and latest objective verdicts (tests/analyzer/sla/test_verdicts.py measures both): 160,000
trackers (40,000 paths x 4 slices) take about 0.85 GB. `add` costs about 13 us, `verdict`
about 9 us on one core of the development machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from analyzer.sla.hysteresis import Hysteresis
from analyzer.sla.lookback import Lookback, count_interval
from analyzer.sla.policies import (
    AVAILABILITY,
    DEFAULT_BURN_WINDOWS,
    DELAY_VARIATION,
    LOSS,
    ONE_WAY_DELAY,
    TWO_WAY_DELAY,
    BurnWindow,
    ConfigError,
    Objective,
    SlaPolicy,
    default_policies,
    load_policies,
    policy_from_dict,
    policy_to_dict,
)
from analyzer.sla.resolution import shows_excess
from analyzer.sla.series import IntervalStats
from collector.contract.records import RTT_BUCKETS_NS, LossCounts, PathKey

__all__ = [
    "DEFAULT_BURN_WINDOWS",
    "BurnWindow",
    "ConfigError",
    "Objective",
    "ObjectiveVerdict",
    "SlaPolicy",
    "SlaTracker",
    "SlaVerdict",
    "default_policies",
    "duration_label",
    "interval_compliance",
    "load_policies",
    "unavailable_share",
]

STATE_VERSION = 1
# Objectives over events (probes, replies): judged on the interval extended back while its
# events cannot resolve the bound (analyzer.sla.resolution); the others on the interval alone.
EVENT_OBJECTIVES = (LOSS, TWO_WAY_DELAY)
MIN_POOLED_INTERVALS = 10  # an unresolved interval pools with up to this many (or the shortest lookback)


@dataclass(frozen=True, slots=True)
class ObjectiveVerdict:
    name: str
    bound: float
    percentile: float | None
    observed: float | None  # seconds or ratio; math.inf: above the largest RTT bucket
    met: bool | None  # None: not judged (no data, or clocks not good enough for one-way)


@dataclass(frozen=True)
class SlaVerdict:
    slice: str
    path: PathKey | None  # None for the slice as a whole
    status: str  # "ok" | "at-risk" | "breached" | "no-data"
    objectives: tuple[ObjectiveVerdict, ...]  # of the latest interval; availability over the window
    error_budget_remaining: float  # 1.0 untouched, 0 or below spent, over the compliance window
    burn_rates: tuple[tuple[str, float], ...]  # (label, rate) per distinct burn lookback
    since_ns: int  # when the reported status began
    evaluated_ns: int
    intervals: int  # intervals seen
    # True until the tracker has seen its first burn window's long lookback through: its
    # burn rates count the time before its first interval as good (see the module docstring)
    warming: bool = False


class PooledEvents(LossCounts):
    """The events (probes, replies) of unresolved intervals added together: what loss and
    two-way delay are judged on with the next interval (a plain slotted record: one is made
    per pooled interval, and a frozen IntervalStats costs several times more to build)."""

    __slots__ = ("sent", "received", "lost_forward", "lost_reverse", "lost_unknown", "rtt_buckets")

    def __init__(
        self,
        sent: int,
        received: int,
        lost_forward: int,
        lost_reverse: int,
        lost_unknown: int,
        rtt_buckets: tuple[int, ...],
    ) -> None:
        self.sent = sent
        self.received = received
        self.lost_forward = lost_forward
        self.lost_reverse = lost_reverse
        self.lost_unknown = lost_unknown
        self.rtt_buckets = rtt_buckets

    def plus(self, stats: IntervalStats) -> PooledEvents:
        """These events and the interval's."""
        return PooledEvents(
            self.sent + stats.sent,
            self.received + stats.received,
            self.lost_forward + stats.lost_forward,
            self.lost_reverse + stats.lost_reverse,
            self.lost_unknown + stats.lost_unknown,
            tuple(a + b for a, b in zip(self.rtt_buckets, stats.rtt_buckets)),
        )


Events = IntervalStats | PooledEvents  # what loss and two-way delay are judged on


# ---------------------------------------------------------------------------------------
# One interval


def interval_compliance(policy: SlaPolicy, stats: IntervalStats) -> tuple[ObjectiveVerdict, ...]:
    """Each objective of `policy` judged on one interval, in the policy's order."""
    return tuple(_judge(policy, objective, stats, stats) for objective in policy.objectives)


def unavailable_share(policy: SlaPolicy, stats: IntervalStats) -> float:
    """How much of the interval was unavailable: 1 when its summed loss exceeds the policy's
    level, else the share of its paths that did (0 without probes: not judged)."""
    if stats.sent <= 0 or stats.paths <= 0:
        return 0.0
    if stats.loss_ratio > policy.unavailable_loss:
        return 1.0
    return min(1.0, stats.unavailable_paths / stats.paths)


def _judge(policy: SlaPolicy, objective: Objective, stats: IntervalStats, events: Events) -> ObjectiveVerdict:
    """One objective on one interval; loss and two-way delay on `events` (the interval's, or
    the interval's with those of the unresolved intervals before it, analyzer.sla.resolution)."""
    return ObjectiveVerdict(
        objective.name, objective.bound, objective.percentile, *_observed(policy, objective, stats, events)
    )


def _observed(
    policy: SlaPolicy, objective: Objective, stats: IntervalStats, events: Events
) -> tuple[float | None, bool | None]:
    """(observed, met) of one objective on one interval, as `_judge` reports them."""
    observed: float | None = None
    met: bool | None = None
    name, bound = objective.name, objective.bound
    if stats.sent > 0:
        if name == TWO_WAY_DELAY:
            return _delay_percentile(events.rtt_buckets, objective.percentile, bound)
        if name == LOSS:
            observed = events.loss_ratio
            return observed, True if observed <= bound else (
                False if shows_excess(events.lost, events.sent, bound) else None
            )
        if name == ONE_WAY_DELAY:
            error = stats.worst_clock_error_ns
            if error is not None and error <= policy.max_clock_error_s * 1e9:
                delays = [d for d in (stats.worst_forward_owd_p99_ns, stats.worst_reverse_owd_p99_ns) if d is not None]
                if delays:
                    observed = max(delays) / 1e9
        elif name == DELAY_VARIATION:
            if stats.worst_pdv_p99_ns is not None:
                observed = stats.worst_pdv_p99_ns / 1e9
        elif name == AVAILABILITY:
            observed = 1.0 - unavailable_share(policy, stats)
        if observed is not None:
            met = observed >= bound if name == AVAILABILITY else observed <= bound
    return observed, met


def _delay_percentile(
    buckets: tuple[int, ...], percentile: float | None, bound: float
) -> tuple[float | None, bool | None]:
    """(smallest bucket bound holding the percentile, whether that is within `bound`; None
    when it is not and too few replies lie above the bound to show it, see resolution)."""
    total = sum(buckets)
    if total == 0:
        return None, None
    share = (percentile or 100.0) / 100
    needed = share * total * (1 - 1e-12)  # 99 of 100 is p99, float or not
    bound_ns = round(bound * 1e9)
    cumulative = 0
    for upper_ns, count in zip(RTT_BUCKETS_NS, buckets):
        cumulative += count
        if cumulative >= needed:
            if upper_ns <= bound_ns:
                return upper_ns / 1e9, True
            observed = upper_ns / 1e9
            break
    else:
        observed = math.inf
    slow = total - sum(count for upper_ns, count in zip(RTT_BUCKETS_NS, buckets) if upper_ns <= bound_ns)
    return observed, False if shows_excess(slow, total, 1 - share) else None


def duration_label(seconds: float) -> str:
    """3600 -> "1h", 300 -> "5m", 259200 -> "3d", 2 -> "2s", 0.5 -> "500ms"."""
    ns = round(seconds * 1e9)
    for unit, size in (("d", 86_400 * 10**9), ("h", 3_600 * 10**9), ("m", 60 * 10**9), ("s", 10**9), ("ms", 10**6)):
        if ns and ns % size == 0:
            return f"{ns // size}{unit}"
    return f"{seconds:g}s"


# ---------------------------------------------------------------------------------------
# Over time


class SlaTracker:
    """Verdicts for one slice (path None) or one path under one policy."""

    __slots__ = (
        "policy",
        "interval_s",
        "interval_ns",
        "path",
        "_burn",
        "_alarms",
        "_compliance",
        "_window_intervals",
        "_allowed_bad",
        "_availability_bound",
        "_hysteresis",
        "_latest",
        "_latest_judged_on",
        "_last_start_ns",
        "_last_end_ns",
        "_intervals",
        "_first_start_ns",
        "_warm_ns",
        "_pooled",
        "_pooled_count",
        "_pool_limit",
        "_events_bad",
        "_lookbacks",
    )

    def __init__(self, policy: SlaPolicy, interval_s: float, path: PathKey | None = None) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be above 0, got {interval_s!r}")
        self.policy = policy
        self.interval_s = interval_s
        self.interval_ns = round(interval_s * 1e9)
        self.path = path
        # One Lookback per distinct burn lookback, keyed by its label, in the windows' order.
        self._burn = {duration_label(s): Lookback(round(s * 1e9), self.interval_ns) for s in policy.lookbacks_s}
        self._alarms = tuple(  # (long, short, factor, is a page), resolved once: add() is hot
            (
                self._burn[duration_label(w.long_s)],
                self._burn[duration_label(w.short_s)],
                w.factor,
                w.severity == "page",
            )
            for w in policy.burn_windows
        )
        self._compliance = Lookback(round(policy.compliance_window_s * 1e9), self.interval_ns, track_unavailable=True)
        self._window_intervals = max(1.0, policy.compliance_window_s / interval_s)
        self._allowed_bad = (1 - policy.objective_ratio) * self._window_intervals
        availability = policy.objective(AVAILABILITY)
        self._availability_bound = None if availability is None else availability.bound
        self._hysteresis = Hysteresis(policy.hysteresis_intervals)
        # The newest interval's objective verdicts, built when first read: (stats, events) they
        # are judged on until then (add() decides bad or not without building them).
        self._latest: tuple[ObjectiveVerdict, ...] | None = None
        self._latest_judged_on: tuple[IntervalStats, Events] | None = None
        self._last_start_ns: int | None = None
        self._last_end_ns: int | None = None
        self._intervals = 0
        self._first_start_ns: int | None = None
        self._warm_ns = round(policy.burn_windows[0].long_s * 1e9) if policy.burn_windows else 0
        # the unresolved intervals' events (analyzer.sla.resolution), judged with the next one
        self._pooled: PooledEvents | None = None
        self._pooled_count = 0
        shortest = min(policy.lookbacks_s, default=0.0)
        self._pool_limit = max(MIN_POOLED_INTERVALS, round(shortest / interval_s))
        self._events_bad = False  # the latest resolved judgement of loss or delay was a violation
        self._lookbacks = (*self._burn.values(), self._compliance)  # each counts every interval

    def fresh(self, path: PathKey | None) -> SlaTracker:
        """A new tracker like this one when it was made (same policy and interval), for
        `path`: what the constructor makes, without deriving the policy's figures again (a
        path's columns build one for every read, analyzer.sla.path_trackers)."""
        tracker = SlaTracker.__new__(SlaTracker)
        for name in SlaTracker.__slots__:
            setattr(tracker, name, getattr(self, name))
        tracker.path = path
        renewed = {id(lookback): lookback.fresh() for lookback in self._lookbacks}
        tracker._burn = {label: renewed[id(lookback)] for label, lookback in self._burn.items()}
        tracker._compliance = renewed[id(self._compliance)]
        tracker._lookbacks = tuple(renewed[id(lookback)] for lookback in self._lookbacks)
        tracker._alarms = tuple(
            (renewed[id(long)], renewed[id(short)], factor, page) for long, short, factor, page in self._alarms
        )
        tracker._hysteresis = Hysteresis(self.policy.hysteresis_intervals)
        tracker._latest = tracker._latest_judged_on = None
        tracker._last_start_ns = tracker._last_end_ns = tracker._first_start_ns = tracker._pooled = None
        tracker._intervals = tracker._pooled_count = 0
        tracker._events_bad = False
        return tracker

    def add(self, stats: IntervalStats) -> None:
        """Count one interval; an interval not newer than the last one is ignored."""
        if self._last_start_ns is not None and stats.start_ns <= self._last_start_ns:
            return
        if self._last_end_ns is not None and stats.start_ns - self._last_end_ns >= self.interval_ns:
            self._step_missing(self._hysteresis, stats.start_ns)
        judged = stats.sent > 0 and stats.paths > 0
        pooled = self._pooled
        events: Events = stats if pooled is None or not judged else pooled.plus(stats)
        bad = False
        bad_intervals = 0
        if judged:
            policy = self.policy
            events_bad = unresolved = False
            for objective in policy.objectives:  # met or not, without building the verdicts
                observed, met = _observed(policy, objective, stats, events)
                if met is False:
                    bad = True
                    events_bad = events_bad or objective.name in EVENT_OBJECTIVES
                elif met is None and observed is not None and objective.name in EVENT_OBJECTIVES:
                    unresolved = True
            bad_intervals = int(bad)
            self._pooled_count += 1
            if events_bad:
                bad_intervals = self._pooled_count  # the extended interval was bad: every interval of it
                self._events_bad = True
            elif not unresolved:
                self._events_bad = False
            if not unresolved or self._pooled_count >= self._pool_limit:
                self._pooled, self._pooled_count = None, 0
            else:
                self._pooled = events if type(events) is PooledEvents else _events_of(stats)
            if self._first_start_ns is None:
                self._first_start_ns = stats.start_ns
        unavailable = unavailable_share(self.policy, stats)
        count_interval(self._lookbacks, stats.start_ns, judged, bad_intervals, unavailable)
        self._latest, self._latest_judged_on = None, (stats, events)
        self._last_start_ns = stats.start_ns
        self._last_end_ns = max(stats.end_ns, stats.start_ns + 1)
        self._intervals += 1
        # an unresolved interval after a violation is still at risk until its pool resolves
        raw = self._raw_status(self._last_end_ns, bad or self._events_bad) if judged else "no-data"
        self._hysteresis.step(raw, stats.start_ns)

    def verdict(self, now_ns: int) -> SlaVerdict:
        machine = self._hysteresis
        if self._last_end_ns is not None and now_ns - self._last_end_ns >= self.interval_ns:
            machine = machine.copy()  # slots that never arrived, without changing the tracker
            self._step_missing(machine, now_ns)
        return SlaVerdict(
            slice=self.policy.slice,
            path=self.path,
            status=machine.status,
            objectives=self._objectives(now_ns),
            error_budget_remaining=self._budget_remaining(now_ns),
            burn_rates=tuple((label, self._burn_rate(lookback, now_ns)) for label, lookback in self._burn.items()),
            since_ns=machine.since_ns,
            evaluated_ns=now_ns,
            intervals=self._intervals,
            warming=self._first_start_ns is None or now_ns - self._first_start_ns < self._warm_ns,
        )

    # -- the pieces of a verdict ----------------------------------------------------------

    def _raw_status(self, now_ns: int, latest_bad: bool) -> str:
        if not any(lookback.total_bad for lookback in self._lookbacks):
            # No bad interval held anywhere (a healthy path, nearly always): every burn rate is
            # 0 and the budget whole, so only availability can move the status, and only when
            # the compliance window holds some unavailability.
            if self._compliance.total_unavailable and self._availability(now_ns)[1] is False:
                return "breached"
            return "at-risk" if latest_bad else "ok"
        ticket = False
        for long, short, factor, page in self._alarms:
            if self._burn_rate(long, now_ns) > factor and self._burn_rate(short, now_ns) > factor:
                if page:
                    return "breached"
                ticket = True
        if self._budget_remaining(now_ns) <= 0 or self._availability(now_ns)[1] is False:
            return "breached"
        return "at-risk" if ticket or latest_bad else "ok"

    def _burn_rate(self, lookback: Lookback, now_ns: int) -> float:
        # Over the lookback's full length, not the intervals it holds: a fresh tracker's one
        # bad interval is one bad interval of the window, not a whole window's worth.
        _, bad, _ = lookback.totals(now_ns)
        return bad / max(1.0, lookback.length_ns / self.interval_ns) / (1 - self.policy.objective_ratio)

    def _budget_remaining(self, now_ns: int) -> float:
        _, bad, _ = self._compliance.totals(now_ns)
        return 1.0 - bad / self._allowed_bad

    def _availability(self, now_ns: int) -> tuple[float | None, bool | None]:
        if self._availability_bound is None:
            return None, None
        judged, _, unavailable = self._compliance.totals(now_ns)
        if not judged:
            return None, None
        share = 1.0 - unavailable / self._window_intervals
        return share, share >= self._availability_bound

    def _objectives(self, now_ns: int) -> tuple[ObjectiveVerdict, ...]:
        latest = self._latest_objectives() or tuple(
            ObjectiveVerdict(o.name, o.bound, o.percentile, None, None) for o in self.policy.objectives
        )
        observed, met = self._availability(now_ns)
        return tuple(
            ObjectiveVerdict(v.name, v.bound, v.percentile, observed, met) if v.name == AVAILABILITY else v
            for v in latest
        )

    def _latest_objectives(self) -> tuple[ObjectiveVerdict, ...] | None:
        """The newest interval's objective verdicts (None before any interval)."""
        if self._latest is None and self._latest_judged_on is not None:
            stats, events = self._latest_judged_on
            self._latest = tuple(_judge(self.policy, o, stats, events) for o in self.policy.objectives)
            self._latest_judged_on = None
        return self._latest

    def _step_missing(self, machine: Hysteresis, until_ns: int) -> None:
        """Feed `no-data` for the interval slots between the newest interval and `until_ns`."""
        if self._last_end_ns is None:
            return
        missing = (until_ns - self._last_end_ns) // self.interval_ns
        for k in range(min(missing, self.policy.hysteresis_intervals)):  # more change nothing
            machine.step("no-data", self._last_end_ns + k * self.interval_ns)

    # -- snapshot --------------------------------------------------------------------------

    def to_state(self) -> dict:
        """A JSON-ready snapshot; `from_state` continues from it exactly."""
        return {
            "version": STATE_VERSION,
            "policy": policy_to_dict(self.policy),
            "interval_s": self.interval_s,
            "path": None
            if self.path is None
            else [self.path.source, self.path.target, self.path.slice, self.path.kind],
            "intervals": self._intervals,
            "last_start_ns": self._last_start_ns,
            "last_end_ns": self._last_end_ns,
            "latest": None
            if (latest := self._latest_objectives()) is None
            else [[v.name, v.bound, v.percentile, _encode(v.observed), v.met] for v in latest],
            "hysteresis": self._hysteresis.to_state(),
            "burn": {label: lookback.to_state() for label, lookback in self._burn.items()},
            "compliance": self._compliance.to_state(),
            "first_start_ns": self._first_start_ns,
            "events_bad": self._events_bad,
            "pooled": None if self._pooled is None else [self._pooled_count, *_event_counts(self._pooled)],
        }

    @classmethod
    def from_state(cls, state: dict, policy: SlaPolicy | None = None) -> SlaTracker:
        """Rebuild a tracker from `to_state()`. With `policy` (say, a reloaded file) counts are
        kept for every lookback whose length is unchanged; the others start empty."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"SLA tracker state version {state.get('version')!r}, expected {STATE_VERSION}")
        policy = policy or policy_from_dict(state["policy"])
        path = None if state["path"] is None else PathKey(*state["path"])
        tracker = cls(policy, state["interval_s"], path)
        tracker._intervals = state["intervals"]
        tracker._last_start_ns = state["last_start_ns"]
        tracker._last_end_ns = state["last_end_ns"]
        latest = state["latest"]
        same_objectives = latest is not None and [v[:3] for v in latest] == [
            [o.name, o.bound, o.percentile] for o in policy.objectives
        ]
        if same_objectives:
            tracker._latest = tuple(ObjectiveVerdict(n, b, p, _decode(o), m) for n, b, p, o, m in latest)
        tracker._hysteresis = Hysteresis(policy.hysteresis_intervals, **state["hysteresis"])
        for label, lookback in tracker._burn.items():
            if label in state["burn"]:
                lookback.restore(state["burn"][label])
        tracker._compliance.restore(state["compliance"])
        tracker._first_start_ns = state.get("first_start_ns")
        tracker._events_bad = state.get("events_bad", False)
        pooled = state.get("pooled")
        if pooled is not None:
            count, sent, received, lost_forward, lost_reverse, lost_unknown, buckets = pooled
            losses = (lost_forward, lost_reverse, lost_unknown)
            tracker._pooled_count, tracker._pooled = count, PooledEvents(sent, received, *losses, tuple(buckets))
        return tracker

    def nbytes(self) -> int:
        """Bytes of the tracker's counters (what grows with lookbacks and windows)."""
        return sum(lookback.nbytes() for lookback in self._burn.values()) + self._compliance.nbytes()


def _events_of(stats: IntervalStats) -> PooledEvents:
    return PooledEvents(
        stats.sent, stats.received, stats.lost_forward, stats.lost_reverse, stats.lost_unknown, stats.rtt_buckets
    )


def _event_counts(events: PooledEvents) -> list:
    losses = [events.lost_forward, events.lost_reverse, events.lost_unknown]
    return [events.sent, events.received, *losses, list(events.rtt_buckets)]


def _encode(value: float | None) -> float | Literal["inf"] | None:
    return "inf" if value == math.inf else value  # strict JSON has no infinity


def _decode(value: float | Literal["inf"] | None) -> float | None:
    return math.inf if value == "inf" else value
