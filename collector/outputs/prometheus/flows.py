"""The flow receiver's Prometheus metrics: a custom Collector over the receiver's counters.

Each scrape copies the counters under the receiver's lock and yields fresh families
(no global metric objects). Labels stay within the cardinality budget: slices x exporters
x 3 directions for the traffic counters, one series per exporter for the gauges.

`xnet_malformed_packets_total` is shared with the agent's STAMP reflector; the agent's
collector renders one family from both (`malformed_counts`), `FlowCollector` alone
renders it for `xnetmon flows collect`, with the responses its HTTP server cut off (as the
agent's /metrics shows them).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from collector.flow_export.receiver import FlowReceiver
from collector.system.http_limits import responses_cut_off_family
from collector.traffic.counters import TrafficTotals

MALFORMED_HELP = "Packets dropped because they could not be decoded, by protocol and what was wrong with them."


@dataclass(frozen=True, slots=True)
class FlowFigures:
    """One scrape's copy of what the flow families show."""

    totals: dict[tuple[str, str, str], TrafficTotals]  # (slice, exporter, direction)
    sampling_rates: dict[str, float]  # exporter -> 1-in-N in use
    templates: dict[str, int] = field(default_factory=dict)  # exporter -> templates held
    datagrams: dict[tuple[str, str], int] = field(default_factory=dict)  # (exporter, protocol)
    refused: dict[str, int] = field(default_factory=dict)  # reason -> datagrams, templates or rates refused
    errors: dict[str, int] = field(default_factory=dict)  # component -> background failures


def receiver_figures(receiver: FlowReceiver) -> FlowFigures:
    with receiver.reading():
        return FlowFigures(
            receiver.counters.totals(),
            dict(receiver.state.sampling.in_use),
            receiver.state.templates.counts_by_exporter(),
            dict(receiver.datagrams),
            receiver.refusals(),
            dict(receiver.errors),
        )


def flow_families(source: FlowReceiver | FlowFigures) -> Iterator[Metric]:
    figures = source if isinstance(source, FlowFigures) else receiver_figures(source)
    totals, rates, templates, datagrams = figures.totals, figures.sampling_rates, figures.templates, figures.datagrams
    labels = ["slice", "exporter", "direction"]
    octets = CounterMetricFamily(
        "xnet_flow_bytes", "Bytes the slice carried, from flow records, scaled by the sampling rate.", labels=labels
    )
    packets = CounterMetricFamily(
        "xnet_flow_packets", "Packets the slice carried, from flow records, scaled by the sampling rate.", labels=labels
    )
    records = CounterMetricFamily(
        "xnet_flow_records", "Flow records (or sFlow packet samples) received for the slice.", labels=labels
    )
    for (slice_name, exporter, direction), t in sorted(totals.items()):
        octets.add_metric([slice_name, exporter, direction], t.bytes)
        packets.add_metric([slice_name, exporter, direction], t.packets)
        records.add_metric([slice_name, exporter, direction], t.flows)
    sampling = GaugeMetricFamily(
        "xnet_flow_sampling_rate",
        "The 1-in-N sampling rate applied to the exporter's latest records (1: unsampled).",
        labels=["exporter"],
    )
    for exporter, rate in sorted(rates.items()):
        sampling.add_metric([exporter], rate)
    template_count = GaugeMetricFamily(
        "xnet_flow_templates", "Templates and options templates held for the exporter.", labels=["exporter"]
    )
    for exporter, count in sorted(templates.items()):
        template_count.add_metric([exporter], count)
    datagram_count = CounterMetricFamily(
        "xnet_flow_datagrams",
        "Export datagrams received, by exporter and protocol (ipfix, netflow9, sflow).",
        labels=["exporter", "protocol"],
    )
    for (exporter, protocol), count in sorted(datagrams.items()):
        datagram_count.add_metric([exporter, protocol], count)
    refused = CounterMetricFamily(
        "xnet_flow_refused",
        "What the flow receiver refused, by reason: datagrams from outside the exporter allow-list (not-allowed) "
        "or beyond the exporter bound (exporter-limit), templates beyond a bound (template-limit, template-total, "
        "template-size), sampling rates beyond the bound (sampling-limit).",
        labels=["reason"],
    )
    for reason, count in sorted(figures.refused.items()):
        refused.add_metric([reason], count)
    errors = CounterMetricFamily(
        "xnet_flow_receiver_errors",
        "Failures of the flow receiver's background work, by component (state-save: templates and sampling "
        "rates could not be written; receive: the receiving loop met an error and went on).",
        labels=["component"],
    )
    for component, count in sorted(figures.errors.items()):
        errors.add_metric([component], count)
    yield from (octets, packets, records, sampling, template_count, datagram_count, refused, errors)


def malformed_counts(receiver: FlowReceiver) -> list[tuple[tuple[str, str], int]]:
    with receiver.reading():
        return sorted(receiver.malformed.items())


class FlowCollector(Collector):
    def __init__(self, receiver: FlowReceiver) -> None:
        self._receiver = receiver

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        yield from flow_families(self._receiver)
        malformed = CounterMetricFamily("xnet_malformed_packets", MALFORMED_HELP, labels=["protocol", "kind"])
        for (protocol, kind), count in malformed_counts(self._receiver):
            malformed.add_metric([protocol, kind], count)
        yield malformed
        yield responses_cut_off_family()


def flow_registry(receiver: FlowReceiver) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(FlowCollector(receiver))
    return registry
