"""Prometheus metrics of packet captures: their counters, passive TCP RTT and alternate marking.

Each scrape reads the meters as they are and yields fresh families (prometheus.io,
"Writing exporters"), as `collector/outputs/prometheus/agent.py` does for the probes:

- `xnet_capture_{packets,sampled_packets,kernel_drops}_total{exporter}`: what each capture
  received, dissected, and lost in the kernel (`capture_families`).
- `xnet_passive_rtt_seconds{slice}`: histogram on `collector.contract.records.RTT_BUCKETS_S` of the
  passive RTT samples (`collector.capture.tcp_rtt`); per slice only, the remote prefixes stay
  in the report and the API, so that the series count does not grow with the traffic.
- `xnet_tcp_retransmissions_total{slice}`
- `xnet_altmark_packets_total{point,flow_mon_id,colour}`: packets each measurement point
  counted, colour is the L flag (0 or 1).
- `xnet_altmark_block_loss_packets_total{segment}`: packets lost between two points
  ("<upstream>><downstream>"), summed over the blocks paired so far; the scrape pairs the
  blocks that became final since the last one.

Undecodable packets are in each meter's `malformed` attribute; they belong in the
existing `xnet_malformed_packets_total` family, which whoever owns the registry renders.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from collector.capture.altmark import MarkingPoint, SegmentLoss
from collector.capture.live import CaptureStats
from collector.capture.tcp_rtt import PassiveTcpRtt
from collector.contract.records import RTT_BUCKETS_S

_LE = [floatToGoString(bound) for bound in RTT_BUCKETS_S] + ["+Inf"]


class PassiveCollector(Collector):
    """Renders the passive RTT meter, the marking points and the segments between them."""

    def __init__(
        self,
        tcp_rtt: PassiveTcpRtt | None = None,
        points: Sequence[MarkingPoint] = (),
        segments: Sequence[SegmentLoss] = (),
    ) -> None:
        self._tcp_rtt = tcp_rtt
        self._points = tuple(points)
        self._segments = tuple(segments)

    def describe(self) -> list[Metric]:
        return []  # dynamic series: nothing to pre-register

    def collect(self) -> Iterator[Metric]:
        yield from passive_families((self._tcp_rtt,) if self._tcp_rtt is not None else (), self._points, self._segments)


def passive_families(
    tcp_meters: Sequence[PassiveTcpRtt], points: Sequence[MarkingPoint] = (), segments: Sequence[SegmentLoss] = ()
) -> Iterator[Metric]:
    """The families of any number of meters: an agent capturing several interfaces sums its
    RTT meters per slice, so the series stay one per slice."""
    if tcp_meters:
        yield from _tcp_families(tcp_meters)
    if points or segments:
        yield from _altmark_families(points, segments)


def _tcp_families(meters: Sequence[PassiveTcpRtt]) -> Iterator[Metric]:
    rtt = HistogramMetricFamily(
        "xnet_passive_rtt_seconds",
        "Round-trip time of real TCP traffic measured passively at a capture point (TCP timestamps "
        "matched as pping does), from the capture point to the far host and back, in seconds.",
        labels=["slice"],
    )
    retransmissions = CounterMetricFamily(
        "xnet_tcp_retransmissions_total",
        "TCP segments seen again at the capture point (sequence space already seen): losses beyond it.",
        labels=["slice"],
    )
    summed: dict[str, tuple[list[int], float, int]] = {}  # slice -> (buckets, sum, retransmissions)
    for meter in meters:
        for slice_name, summary in meter.report().by_slice.items():
            buckets, total_s, resent = summed.get(slice_name, ([0] * len(_LE), 0.0, 0))
            buckets = [a + b for a, b in zip(buckets, summary.bucket_counts)]
            summed[slice_name] = (buckets, total_s + summary.sum_s, resent + summary.retransmissions)
    for slice_name, (counts, total_s, resent) in sorted(summed.items()):
        cumulative = 0
        histogram: list[tuple[str, float]] = []
        for le, count in zip(_LE, counts):
            cumulative += count
            histogram.append((le, cumulative))
        rtt.add_metric([slice_name], histogram, total_s)
        retransmissions.add_metric([slice_name], resent)
    yield rtt
    yield retransmissions


def _altmark_families(points: Sequence[MarkingPoint], segments: Sequence[SegmentLoss]) -> Iterator[Metric]:
    packets = CounterMetricFamily(
        "xnet_altmark_packets_total",
        "Alternate-marked packets (RFC 9341/9343) a measurement point saw, by FlowMonID and colour (the L flag).",
        labels=["point", "flow_mon_id", "colour"],
    )
    for point in points:
        for (flow_mon_id, colour), count in sorted(dict(point.packets).items()):
            packets.add_metric([point.name, str(flow_mon_id), str(colour)], count)
    yield packets
    loss = CounterMetricFamily(
        "xnet_altmark_block_loss_packets_total",
        "Packets lost between two alternate-marking points (segment = upstream>downstream), summed "
        "over the blocks both points have closed.",
        labels=["segment"],
    )
    for segment in segments:
        segment.poll()
        loss.add_metric([segment.name], segment.lost_packets)
    yield loss


def capture_families(captures: Sequence[tuple[str, CaptureStats]]) -> Iterator[Metric]:
    """Packets each capture (exporter `capture:IFACE`) received, sampled and lost in the
    kernel, and the errors it survived."""
    packets = CounterMetricFamily(
        "xnet_capture_packets",
        "Packets a capture received on its interface, sampled or not (exporter = capture:IFACE).",
        labels=["exporter"],
    )
    sampled = CounterMetricFamily(
        "xnet_capture_sampled_packets",
        "Packets a capture dissected and classified (one in N on average).",
        labels=["exporter"],
    )
    drops = CounterMetricFamily(
        "xnet_capture_kernel_drops",
        "Packets the kernel could not queue for the capture (its socket was full): traffic the flow counters miss.",
        labels=["exporter"],
    )
    errors = CounterMetricFamily(
        "xnet_capture_errors",
        "Errors a capture met and survived (its interface went down, its loop failed and was started again).",
        labels=["exporter"],
    )
    for exporter, stats in captures:
        packets.add_metric([exporter], stats.packets)
        sampled.add_metric([exporter], stats.sampled)
        drops.add_metric([exporter], stats.kernel_drops)
        errors.add_metric([exporter], stats.errors)
    yield from (packets, sampled, drops, errors)
