"""The agent's /metrics: a custom Collector over `MetricsState`'s snapshot, and its server.

Each scrape reads one immutable `MetricsSnapshot` and yields fresh metric families built
from it (prometheus.io, "Writing exporters"): no global metric objects, so a path that
leaves the snapshot leaves /metrics. The names and labels are the metric contract of
docs/architecture.md; every path carries exactly `SERIES_PER_PATH` series, the cardinality budget.
/metrics answers in the text format 0.0.4 with the per-path families from `path_text`'s
template (`AgentCollector.text`, the same bytes as `generate_latest`, at a fraction of the CPU);
requests that filter by `name[]` go to prometheus_client's own app.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIServer

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest, make_wsgi_app
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import gzip_accepted
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from collector.contract.records import RTT_BUCKETS_S
from collector.outputs.http import serve_metrics_and_top, serve_wsgi
from collector.outputs.prometheus.path_text import PathFamiliesText
from collector.outputs.prometheus.state import MetricsSnapshot, MetricsState
from collector.system.build_info import build_info_family
from collector.system.http_limits import responses_cut_off_family

if TYPE_CHECKING:  # flow receiver and captures are optional: imported only by agents that run them
    from collector.capture.agent_captures import AgentCaptures
    from collector.flow_export.receiver import FlowReceiver

PATH_LABELS = ["src", "dst", "slice", "probe"]
# 7 counters (sent, received, lost x 3 directions, duplicates, reordered), the RTT histogram
# (12 buckets + +Inf + _sum + _count), 2 delay-variation gauges, path info.
SERIES_PER_PATH = 7 + (len(RTT_BUCKETS_S) + 1 + 2) + 2 + 1
_LE = [floatToGoString(b) for b in RTT_BUCKETS_S] + ["+Inf"]


class AgentCollector(Collector):
    """Renders whatever snapshot `state` holds at the moment of the scrape."""

    def __init__(
        self, state: MetricsState, flows: FlowReceiver | None = None, captures: AgentCaptures | None = None
    ) -> None:
        self._state = state
        self._flows = flows
        self._captures = captures
        self._path_text = PathFamiliesText(_path_families(MetricsSnapshot()), _LE)

    def describe(self) -> list[Metric]:
        return []  # dynamic series: nothing to pre-register, and no collect() at registration

    def collect(self) -> Iterator[Metric]:
        snapshot = self._state.snapshot  # one read: the whole scrape sees one picture
        yield build_info_family()
        yield from _path_families(snapshot)
        yield from self._site_families(snapshot)

    def text(self, tail: bytes = b"") -> bytes:
        """`generate_latest` of this collector, byte for byte, with the per-path families
        (nearly all of it) from the template renderer; `tail` follows (the page is ~100 MB at
        40,000 paths: written once, in one piece)."""
        snapshot = self._state.snapshot
        return self._path_text.page(
            snapshot.paths,
            before=generate_latest(_Families([build_info_family()])),
            after=generate_latest(_Families(self._site_families(snapshot))) + tail,
        )

    def _site_families(self, snapshot: MetricsSnapshot) -> Iterator[Metric]:
        """Everything after the per-path families: a handful of series per site."""
        yield from _collector_families(snapshot)
        yield from _ship_failure_families(snapshot)
        yield from _marked_blocks_dropped_families(snapshot)
        yield from _error_families(snapshot)
        yield responses_cut_off_family()
        yield from _reflector_families(snapshot)
        yield from _on_demand_families(snapshot)
        yield from _flow_and_malformed_families(snapshot, self._flows, self._captures)


class _Families(Collector):
    """Families already built, for `generate_latest` to format."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def _path_families(snapshot: MetricsSnapshot) -> Iterator[Metric]:
    sent = CounterMetricFamily(
        "xnet_probe_sent_total",
        "Probe packets sent on the path from site src to target dst in the slice.",
        labels=PATH_LABELS,
    )
    received = CounterMetricFamily(
        "xnet_probe_received_total",
        "Probe replies received in time on the path (duplicates not counted).",
        labels=PATH_LABELS,
    )
    lost = CounterMetricFamily(
        "xnet_probe_lost_total",
        "Probe packets lost on the path, by direction: forward (the reflector never saw the request), "
        "reverse (the reflector answered, the reply never arrived), unknown (no reflector counters to tell).",
        labels=[*PATH_LABELS, "direction"],
    )
    duplicates = CounterMetricFamily(
        "xnet_probe_duplicates_total",
        "Extra copies of probe replies received on the path.",
        labels=PATH_LABELS,
    )
    reordered = CounterMetricFamily(
        "xnet_probe_reordered_total",
        "Probe replies that arrived after a reply to a later probe (RFC 4737 reordering).",
        labels=PATH_LABELS,
    )
    rtt = HistogramMetricFamily(
        "xnet_rtt_seconds",
        "Round-trip time of the path's received probes in seconds; for STAMP the reflector's "
        "own residence time is taken out. Bucket bounds include every SLA delay bound.",
        labels=PATH_LABELS,
    )
    variation = GaugeMetricFamily(
        "xnet_delay_variation_seconds",
        "Delay variation over the path's latest window in seconds: type ipdv is the mean absolute "
        "difference between consecutive probes (RFC 3393), type pdv_p99 the 99th percentile of "
        "delay above the window's minimum (RFC 5481). Absent when the window had too few replies.",
        labels=[*PATH_LABELS, "type"],
    )
    info = GaugeMetricFamily(
        "xnet_path_info",
        "Always 1; address is the target's address, fingerprint identifies the latest traced hop "
        "list (empty before the first trace). A new fingerprint means the path changed.",
        labels=[*PATH_LABELS, "address", "fingerprint"],
    )
    for totals in snapshot.paths.values():
        key = totals.key
        labels = [key.source, key.target, key.slice, key.kind]
        sent.add_metric(labels, totals.sent)
        received.add_metric(labels, totals.received)
        lost.add_metric([*labels, "forward"], totals.lost_forward)
        lost.add_metric([*labels, "reverse"], totals.lost_reverse)
        lost.add_metric([*labels, "unknown"], totals.lost_unknown)
        duplicates.add_metric(labels, totals.duplicates)
        reordered.add_metric(labels, totals.reordered)
        cumulative, buckets = 0, []
        for le, count in zip(_LE, totals.rtt_buckets):
            cumulative += count
            buckets.append((le, cumulative))
        rtt.add_metric(labels, buckets, totals.rtt_sum_ns / 1e9)  # _count is the +Inf bucket
        if totals.ipdv_ns is not None:
            variation.add_metric([*labels, "ipdv"], totals.ipdv_ns / 1e9)
        if totals.pdv_p99_ns is not None:
            variation.add_metric([*labels, "pdv_p99"], totals.pdv_p99_ns / 1e9)
        info.add_metric([*labels, totals.address, totals.fingerprint], 1)
    yield from (sent, received, lost, duplicates, reordered, rtt, variation, info)


def _collector_families(snapshot: MetricsSnapshot) -> Iterator[Metric]:
    """The agent's own health, labelled by site: a slow or starved agent must be told
    apart from a slow network."""
    last_window = GaugeMetricFamily(
        "xnet_collector_last_window_timestamp_seconds",
        "Unix time at which the newest path window in these metrics ended. If time() minus this "
        "grows past a few probe intervals, the agent has stopped producing measurements.",
        labels=["src"],
    )
    for site, end_ns in sorted(snapshot.last_window_end_ns.items()):
        last_window.add_metric([site], end_ns / 1e9)
    yield last_window
    if not snapshot.health:
        return
    # A summary of quantiles alone (the latest window's p99 and maximum): a gauge may not
    # carry a `quantile` label (`promtool check metrics`), and _sum/_count are optional.
    lag = Metric(
        "xnet_collector_scheduling_lag_seconds",
        "How late probes left compared with their schedule during the latest window, in seconds "
        "(quantile 1 is the maximum). High values mean the agent, not the network, is slow.",
        "summary",
    )
    counters = {  # metric -> (help, CollectorHealth field); full names, so a metric can be searched for
        "xnet_collector_probes_sent_total": ("Probe packets the agent sent, all paths together.", "probes_sent_total"),
        "xnet_collector_send_errors_total": (
            "Probe sends the kernel refused (no route, full buffers...).",
            "send_errors_total",
        ),
        "xnet_collector_receive_errors_total": (
            "Errors while reading probe replies from the agent's sockets.",
            "receive_errors_total",
        ),
        "xnet_collector_socket_drops_total": (
            "Datagrams the kernel dropped because the agent's sockets were full: replies lost "
            "here look like reverse loss but are the agent's own.",
            "socket_drops_total",
        ),
        "xnet_collector_cpu_seconds_total": (
            "CPU time the agent has used (user and system), in seconds.",
            "cpu_seconds_total",
        ),
        "xnet_collector_windows_dropped_total": (
            "Path windows discarded because the spool for the analyzer was full.",
            "windows_dropped_total",
        ),
    }
    counter_families = {
        name: (CounterMetricFamily(name, doc, labels=["src"]), field) for name, (doc, field) in counters.items()
    }
    sessions = GaugeMetricFamily(
        "xnet_collector_sessions",
        "Probe schedules running: one per (target, slice, probe kind).",
        labels=["src"],
    )
    spool = GaugeMetricFamily(
        "xnet_collector_spool_windows",
        "Path windows waiting in the spool to be shipped to the analyzer.",
        labels=["src"],
    )
    for site, health in sorted(snapshot.health.items()):
        lag.add_sample(lag.name, {"src": site, "quantile": "0.99"}, health.scheduling_lag_p99_ns / 1e9)
        lag.add_sample(lag.name, {"src": site, "quantile": "1"}, health.scheduling_lag_max_ns / 1e9)
        for family, field in counter_families.values():
            family.add_metric([site], getattr(health, field))
        sessions.add_metric([site], health.sessions)
        spool.add_metric([site], health.spool_depth)
    yield lag
    yield from (family for family, _ in counter_families.values())
    yield sessions
    yield spool


def _ship_failure_families(snapshot: MetricsSnapshot) -> Iterator[Metric]:
    if not snapshot.ship_failures:
        return  # no sink to the analyzer (or not yet reported)
    failures = CounterMetricFamily(
        "xnet_collector_ship_failures_total",
        "Shipments to the analyzer that failed, by reason: auth (the analyzer refused the agent's "
        "token; the windows stay spooled and are retried), rejected (refused for good), unavailable "
        "(the analyzer said come back later), network (no answer).",
        labels=["src", "reason"],
    )
    for site, by_reason in sorted(snapshot.ship_failures.items()):
        for reason, count in sorted(by_reason.items()):
            failures.add_metric([site, reason], count)
    yield failures


def _marked_blocks_dropped_families(snapshot: MetricsSnapshot) -> Iterator[Metric]:
    if not snapshot.marked_blocks_dropped:
        return  # no sink (or not yet reported)
    dropped = CounterMetricFamily(
        "xnet_collector_marked_blocks_dropped_total",
        "In-situ (alternate-marking) blocks the agent discarded before shipping: the spool's bound "
        "on shipments of blocks alone, a full spool, or a spool that could not be written.",
        labels=["src"],
    )
    for site, count in sorted(snapshot.marked_blocks_dropped.items()):
        dropped.add_metric([site], count)
    yield dropped


def _error_families(snapshot: MetricsSnapshot) -> Iterator[Metric]:
    if not snapshot.errors:
        return
    errors = CounterMetricFamily(
        "xnet_collector_errors_total",
        "Errors a background loop of the agent met and survived, by component: discovery (a trace), "
        "health (its own figures), spool and ship (its sink's threads).",
        labels=["src", "component"],
    )
    for site, by_component in sorted(snapshot.errors.items()):
        for component, count in sorted(by_component.items()):
            errors.add_metric([site, component], count)
    yield errors


def _on_demand_families(snapshot: MetricsSnapshot) -> Iterator[Metric]:
    counters = snapshot.on_demand
    if counters is None:
        return
    requests = CounterMetricFamily(
        "xnet_agent_on_demand_requests_total",
        "Probe requests from operators over the bus, by probe kind and outcome: completed, "
        "cancelled (by the requester), failed (the probe exited non-zero or overran its time), "
        "refused_target (outside the allowed prefixes), refused_busy (every slot taken), "
        "refused_limits (count, rate or duration over the bounds), refused_invalid (not a request), "
        "refused_failed (the probe command could not start).",
        labels=["kind", "outcome"],
    )
    for (kind, outcome), count in sorted(counters.requests.items()):
        requests.add_metric([kind, outcome], count)
    yield requests
    yield GaugeMetricFamily("xnet_agent_on_demand_in_flight", "On-demand probes running now.", value=counters.in_flight)
    yield CounterMetricFamily(
        "xnet_agent_on_demand_errors_total",
        "Errors the on-demand probe thread met and carried on after (a reply not sent, a probe not started).",
        value=counters.errors,
    )


def _reflector_families(snapshot: MetricsSnapshot) -> Iterator[Metric]:
    counters = snapshot.reflector
    if counters is None:
        return
    packets = CounterMetricFamily(
        "xnet_reflector_packets_total",
        "STAMP requests this agent's reflector handled, by result: reflected, refused_not_allowed "
        "(source outside the allow list), refused_rate_limited (over its source prefix's budget), "
        "refused_global_rate_limited (over the reflector's overall budget), refused_replay "
        "(authenticated, answered already), refused_stale (authenticated, too old), send_error. "
        "Undecodable or unauthenticated requests are counted in xnet_malformed_packets_total.",
        labels=["result"],
    )
    packets.add_metric(["reflected"], counters.reflected)
    packets.add_metric(["refused_not_allowed"], counters.refused_not_allowed)
    packets.add_metric(["refused_rate_limited"], counters.refused_rate_limited)
    packets.add_metric(["refused_global_rate_limited"], counters.refused_global_rate_limited)
    packets.add_metric(["refused_replay"], counters.refused_replay)
    packets.add_metric(["refused_stale"], counters.refused_stale)
    packets.add_metric(["send_error"], counters.send_errors)
    yield packets


def _flow_and_malformed_families(
    snapshot: MetricsSnapshot, flows: FlowReceiver | None, captures: AgentCaptures | None = None
) -> Iterator[Metric]:
    """The flow receiver's and the captures' families, and one malformed-packets family for
    STAMP, flow exports and captured packets."""
    if snapshot.reflector is None and flows is None and captures is None:
        return
    malformed = CounterMetricFamily(
        "xnet_malformed_packets_total",
        "Packets dropped because they could not be decoded, by protocol and what was wrong with them.",
        labels=["protocol", "kind"],
    )
    for kind, count in snapshot.reflector.malformed if snapshot.reflector is not None else ():
        malformed.add_metric(["stamp", kind], count)
    if flows is not None or captures is not None:
        yield from _traffic_families(flows, captures)
    if flows is not None:
        from collector.outputs.prometheus.flows import malformed_counts

        for (protocol, kind), count in malformed_counts(flows):
            malformed.add_metric([protocol, kind], count)
    if captures is not None:
        for (protocol, kind), count in captures.malformed_counts():
            malformed.add_metric([protocol, kind], count)
    yield malformed


def _traffic_families(flows: FlowReceiver | None, captures: AgentCaptures | None) -> Iterator[Metric]:
    """One xnet_flow_* set for both: when the agent has a receiver, the captures count into
    its TrafficCounters, so its totals hold theirs; the captures add their sampling rates."""
    from collector.outputs.prometheus.flows import FlowFigures, flow_families, receiver_figures

    if flows is not None:
        figures = receiver_figures(flows)
    else:
        assert captures is not None  # called only when the agent has one or the other
        figures = FlowFigures(captures.totals(), {})
    if captures is not None:
        figures = replace(figures, sampling_rates={**figures.sampling_rates, **captures.sampling_rates()})
    yield from flow_families(figures)
    if captures is not None:
        from collector.outputs.prometheus.passive import capture_families, passive_families

        yield from capture_families(captures.capture_stats())
        yield from passive_families(*captures.meters())


# -- serving -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentMetrics:
    """The agent's collector and the registry that holds it (with the process metrics)."""

    collector: AgentCollector
    registry: CollectorRegistry
    process: CollectorRegistry | None  # the process_* families alone, written after the agent's

    def text(self) -> bytes:
        """`generate_latest(self.registry)`, byte for byte, from the template renderer."""
        return self.collector.text(generate_latest(self.process) if self.process is not None else b"")


def agent_metrics(
    state: MetricsState,
    *,
    process_metrics: bool = True,
    flows: FlowReceiver | None = None,
    captures: AgentCaptures | None = None,
) -> AgentMetrics:
    """A registry of its own (never the global one) holding the agent's collector.

    `process_*` metrics are kept by default: resident memory tracks the memory per
    (target, slice) pair, and start time explains a reset of every counter at once.
    """
    collector = AgentCollector(state, flows, captures)
    registry = CollectorRegistry()
    registry.register(collector)
    process = None
    if process_metrics:
        process = CollectorRegistry()
        registry.register(ProcessCollector(registry=process))
    return AgentMetrics(collector, registry, process)


def agent_registry(
    state: MetricsState,
    *,
    process_metrics: bool = True,
    flows: FlowReceiver | None = None,
    captures: AgentCaptures | None = None,
) -> CollectorRegistry:
    """The registry of `agent_metrics`, for prometheus_client's own renderers."""
    return agent_metrics(state, process_metrics=process_metrics, flows=flows, captures=captures).registry


def metrics_app(metrics: AgentMetrics) -> Callable:
    """The WSGI app of /metrics: GET answers the text format 0.0.4 (which Prometheus accepts
    whatever else it prefers) from the template renderer; `name[]` filters, other methods and
    /favicon.ico go to prometheus_client's app over the same registry."""
    fallback = make_wsgi_app(metrics.registry)

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if (
            environ.get("REQUEST_METHOD") != "GET"
            or environ.get("PATH_INFO") == "/favicon.ico"
            or "name[]" in parse_qs(environ.get("QUERY_STRING", ""))
        ):
            return fallback(environ, start_response)
        body = metrics.text()
        headers = [("Content-Type", CONTENT_TYPE_PLAIN_0_0_4)]
        if gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING", "")):
            # Level 1: at 40,000 paths the page is ~100 MB, and level 9 would cost seconds
            # to save a few percent more.
            body = gzip.compress(body, compresslevel=1)
            headers.append(("Content-Encoding", "gzip"))
        start_response("200 OK", headers)
        return [body]

    return app


@dataclass(frozen=True, slots=True)
class MetricsServer:
    """A running /metrics endpoint; `stop()` closes its socket and ends its thread."""

    httpd: WSGIServer
    thread: threading.Thread

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port): useful after asking for port 0."""
        host, port = self.httpd.server_address[:2]
        return str(host), port  # str already: the server is AF_INET or AF_INET6

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://[{host}]:{port}/metrics" if ":" in host else f"http://{host}:{port}/metrics"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_metrics(
    state: MetricsState,
    listen: tuple[str, int],
    *,
    process_metrics: bool = True,
    flows: FlowReceiver | None = None,
    captures: AgentCaptures | None = None,
) -> MetricsServer:
    """Serve `state` on http://HOST:PORT/metrics from a daemon thread. HOST may be an IPv6
    address, bracketed or not ("::1", "[::1]", "::" for every address); port 0 picks one.
    With a flow receiver or packet captures, their metrics join /metrics and /flows/top
    serves the top talkers (of both: they share one set of counters)."""
    host, port = listen
    host = host.strip("[]")
    metrics = agent_metrics(state, process_metrics=process_metrics, flows=flows, captures=captures)
    app = metrics_app(metrics)
    traffic = flows if flows is not None else captures
    if traffic is not None:
        return MetricsServer(*serve_metrics_and_top(metrics.registry, traffic, (host, port), metrics_app=app))
    return MetricsServer(*serve_wsgi(app, (host, port)))
