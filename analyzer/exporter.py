"""The analyzer's Prometheus metrics: per-slice SLA verdicts, rendered fresh on every scrape.

A custom Collector over whatever `snapshot()` returns (prometheus.io "writing exporters"):
no metric objects live between scrapes, so slices that disappear disappear from /metrics.
Series per slice are few (5 states, one per objective, one per burn window); per-path
detail stays in the API, inside the cardinality budget the agents' metrics already use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from analyzer.rootcause.hints import hint_rows
from analyzer.store.memory import REFUSAL_COUNTERS
from collector.system.build_info import build_info_family

STATES = ("ok", "at-risk", "breached", "no-data")


@dataclass(frozen=True, slots=True)
class BusLink:
    """An analyzer's connection to the bus (analyzer.bus_intake.BusIntake.link)."""

    connected: bool
    disconnections: int  # times it was lost since the start


@dataclass(frozen=True)
class AnalyzerSnapshot:
    """What one scrape shows: slice verdicts (analyzer.sla.verdicts.SlaVerdict, path None) and counters."""

    verdicts: Sequence = ()
    counters: Mapping[str, int] = field(default_factory=dict)  # e.g. windows_ingested -> n
    hints: Sequence = ()  # root-cause hints: objects with kind, suspects, slices, confidence
    errors: Mapping[str, int] = field(default_factory=dict)  # background component -> errors survived
    bus: BusLink | None = None  # None: no bus intake (HTTP only), or its consumer not made yet
    responses_cut_off: int = 0  # by the process's HTTP servers: a client did not read them


COUNTERS = {  # store counter -> (metric, help); full names, so a metric can be searched for
    "windows_ingested": ("xnet_analyzer_windows_ingested_total", "Path windows accepted from agents."),
    "windows_duplicate": (
        "xnet_analyzer_windows_duplicate_total",
        "Path windows received again (agents deliver at least once) and ignored.",
    ),
    "batches_rejected": (
        "xnet_analyzer_batches_rejected_total",
        "Shipments refused: bad token, malformed body or too large.",
    ),
}


class AnalyzerCollector(Collector):
    def __init__(self, snapshot: Callable[[], AnalyzerSnapshot]) -> None:
        self._snapshot = snapshot

    def describe(self) -> list[Metric]:
        return []  # families depend on the slices present: render them only at scrape time

    def collect(self) -> Iterator[Metric]:
        snapshot = self._snapshot()
        yield build_info_family()
        yield from _slice_families(snapshot.verdicts)
        yield _hint_family(snapshot.hints)
        for counter, (metric, help_text) in COUNTERS.items():
            family = CounterMetricFamily(metric, help_text)
            family.add_metric([], snapshot.counters.get(counter, 0))
            yield family
        refused = CounterMetricFamily(
            "xnet_analyzer_windows_refused_total",
            "Path windows refused on their way in, by reason: source-mismatch (a path source other than the sending "
            "site), malformed, unknown-slice (no SLA policy names it), too-many-paths (the store's bound).",
            labels=["reason"],
        )
        for reason, counter in REFUSAL_COUNTERS.items():
            refused.add_metric([reason], snapshot.counters.get(counter, 0))
        yield refused
        errors = CounterMetricFamily(
            "xnet_analyzer_errors_total",
            "Errors a background loop of the analyzer met and survived, by component (snapshot, intervals, "
            "rootcause, feeder, ...); /healthz shows the latest one's words.",
            labels=["component"],
        )
        for component, count in sorted(snapshot.errors.items()):
            errors.add_metric([component], count)
        yield errors
        cut_off = CounterMetricFamily(
            "xnet_analyzer_http_responses_cut_off_total",
            "Responses of the API cut off because the client did not read them at the server's send bounds "
            "(collector/system/http_limits.py).",
        )
        cut_off.add_metric([], snapshot.responses_cut_off)
        yield cut_off
        if snapshot.bus is not None:
            yield from _bus_families(snapshot.bus)


def _bus_families(link: BusLink) -> Iterator[Metric]:
    connected = GaugeMetricFamily(
        "xnet_analyzer_bus_connected",
        "1 while the analyzer's bus intake is connected to nats-server, 0 while it is not (intervals then "
        "wait for the windows the agents keep, rather than close empty).",
    )
    connected.add_metric([], 1.0 if link.connected else 0.0)
    yield connected
    lost = CounterMetricFamily(
        "xnet_analyzer_bus_disconnections_total",
        "Times the analyzer's bus intake lost its connection to nats-server (closed, or silent to pings).",
    )
    lost.add_metric([], link.disconnections)
    yield lost


def _slice_families(verdicts: Sequence) -> Iterator[Metric]:
    state = GaugeMetricFamily(
        "xnet_slice_state",
        "1 for the slice's current SLA state (ok, at-risk, breached, no-data), 0 for the others.",
        labels=["slice", "state"],
    )
    met = GaugeMetricFamily(
        "xnet_slice_sla_objective_met",
        "1 when the slice met the objective in its latest interval, 0 when it did not; absent when "
        "there was nothing to judge (no replies, or clocks not good enough for one-way delay).",
        labels=["slice", "objective"],
    )
    observed = GaugeMetricFamily(
        "xnet_slice_sla_objective_observed",
        "The value the latest interval showed for the objective: seconds for delays, a ratio for loss "
        "and availability. Compare with xnet_slice_sla_objective_bound.",
        labels=["slice", "objective"],
    )
    bound = GaugeMetricFamily(
        "xnet_slice_sla_objective_bound",
        "The objective's bound from the slice's SLA policy: seconds for delays, a ratio for loss "
        "(highest allowed) and availability (lowest allowed).",
        labels=["slice", "objective"],
    )
    budget = GaugeMetricFamily(
        "xnet_slice_error_budget_remaining_ratio",
        "Share of the compliance window's error budget still unspent: 1 untouched, 0 or below spent.",
        labels=["slice"],
    )
    burn = GaugeMetricFamily(
        "xnet_slice_burn_rate",
        "How fast the error budget burns over the window (1 = exactly on budget); pages at 14.4 over "
        "1h and 5m, or 6 over 6h and 30m.",
        labels=["slice", "window"],
    )
    since = GaugeMetricFamily(
        "xnet_slice_state_since_timestamp_seconds",
        "Unix time at which the slice entered its current state.",
        labels=["slice"],
    )
    for verdict in sorted(verdicts, key=lambda v: v.slice):
        name = verdict.slice
        for candidate in STATES:
            state.add_metric([name, candidate], 1.0 if verdict.status == candidate else 0.0)
        for objective in verdict.objectives:
            bound.add_metric([name, objective.name], objective.bound)
            if objective.met is not None:
                met.add_metric([name, objective.name], 1.0 if objective.met else 0.0)
            if objective.observed is not None:
                observed.add_metric([name, objective.name], objective.observed)
        budget.add_metric([name], verdict.error_budget_remaining)
        for window, rate in verdict.burn_rates:
            burn.add_metric([name, window], rate)
        since.add_metric([name], verdict.since_ns / 1e9)
    yield from (state, met, observed, bound, budget, burn, since)


def _hint_family(hints: Sequence) -> Metric:
    family = GaugeMetricFamily(
        "xnet_rootcause_hint",
        "A root-cause hint for a slice: the value is its confidence (0..1). kind says what it is "
        "(link-loss, congestion, path-change, probe-host, ...), suspect which link, node or host.",
        labels=["slice", "kind", "suspect"],
    )
    for row in hint_rows(hints):
        family.add_metric([row.slice, row.kind, row.suspect], row.confidence)
    return family


def analyzer_registry(snapshot: Callable[[], AnalyzerSnapshot]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AnalyzerCollector(snapshot))
    return registry
