"""The analyzer's in-situ segment metrics, rendered fresh per scrape from the segment store.

Counters aggregate across flows (no FlowMonID label: a national extranet marks thousands of
flows; /segments has them one by one): per slice, segment (`a>b` for a link, span or
end-to-end, the site's name for a node) and kind.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from analyzer.insitu.segments import SegmentStore

LABELS = ["slice", "segment", "kind"]


class SegmentCollector(Collector):
    def __init__(self, store: SegmentStore) -> None:
        self._store = store

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        packets = CounterMetricFamily(
            "xnet_segment_packets_total",
            "Marked packets that entered the segment (its upstream counting point), in blocks paired at both ends.",
            labels=LABELS,
        )
        lost = CounterMetricFamily(
            "xnet_segment_lost_packets_total",
            "Marked packets lost on the segment: upstream count minus downstream count, block by block "
            "(in-situ flow telemetry, RFC 9341).",
            labels=LABELS,
        )
        blocks = CounterMetricFamily(
            "xnet_segment_blocks_total", "Blocks of marked flows paired across the segment.", labels=LABELS
        )
        unknown = CounterMetricFamily(
            "xnet_segment_unknown_blocks_total",
            "Blocks paired across the segment whose loss is unknown: a counting point's capture socket dropped "
            "packets during the block (left out of the packet, loss and block counters).",
            labels=LABELS,
        )
        delay = GaugeMetricFamily(
            "xnet_segment_delay_seconds",
            "One-way delay across the segment of the latest block's D-marked packets (clock error of both "
            "points' agents added).",
            labels=LABELS,
        )
        for (slice_name, segment, kind), totals in sorted(self._store.totals().items()):
            labels = [slice_name, segment, kind]
            packets.add_metric(labels, totals.packets)
            lost.add_metric(labels, totals.lost)
            blocks.add_metric(labels, totals.blocks)
            unknown.add_metric(labels, totals.unknown_blocks)
            if totals.last_delay_ns is not None:
                delay.add_metric(labels, totals.last_delay_ns / 1e9)
        yield from (packets, lost, blocks, unknown, delay)
