"""What one capture point is made of: flow aggregator, optional passive meters, live socket.

`xnetmon capture` and the agent's `capture:` section wire a capture the same way: a
`FlowAggregator` at the sampling rate, then the meters that must see every packet
(`PassiveTcpRtt`, a `MarkingPoint`), then for a live capture the AF_PACKET socket. Keeping
that here means both classify, scale and measure identically.
"""

from __future__ import annotations

from dataclasses import dataclass

from collector.capture.aggregate import DEFAULT_ACTIVE_TIMEOUT_S, DEFAULT_IDLE_TIMEOUT_S, FlowAggregator
from collector.capture.counting_point import CountingPoint
from collector.capture.live import LiveCapture, Sampler
from collector.capture.tcp_rtt import PassiveTcpRtt
from collector.traffic.classifier import SliceClassifier
from collector.wire.dissect import DEFAULT_SLICE_OPTION


@dataclass(frozen=True, slots=True)
class CaptureOptions:
    sampling_rate: int = 1  # 1:N
    tcp_rtt: bool = False
    altmark_point: str | None = None  # the counting point's name (its link's); None: no marking counters
    slice_option_type: int = DEFAULT_SLICE_OPTION
    active_timeout_s: float = DEFAULT_ACTIVE_TIMEOUT_S
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S


@dataclass(frozen=True, slots=True)
class CaptureMeters:
    aggregator: FlowAggregator
    tcp_rtt: PassiveTcpRtt | None
    marking: CountingPoint | None

    @property
    def observers(self) -> tuple:
        """The meters that see every packet, sampled or not."""
        return tuple(m for m in (self.tcp_rtt, self.marking) if m is not None)


def capture_meters(exporter: str, classifier: SliceClassifier, options: CaptureOptions) -> CaptureMeters:
    """ValueError when a rate or timeout is out of range."""
    aggregator = FlowAggregator(
        exporter,
        classifier,
        sampling_rate=options.sampling_rate,
        active_timeout_s=options.active_timeout_s,
        idle_timeout_s=options.idle_timeout_s,
    )
    return CaptureMeters(
        aggregator,
        PassiveTcpRtt(classifier) if options.tcp_rtt else None,
        CountingPoint(options.altmark_point, classifier) if options.altmark_point else None,
    )


def open_live_capture(
    interface: str, classifier: SliceClassifier, options: CaptureOptions, seed: int | None = None
) -> tuple[LiveCapture, CaptureMeters]:
    """A bound AF_PACKET capture of `interface` (exporter "capture:IFACE") and its meters.
    PermissionError without CAP_NET_RAW, OSError when the interface is not there."""
    meters = capture_meters(f"capture:{interface}", classifier, options)
    capture = LiveCapture(
        interface,
        meters.aggregator,
        sampler=Sampler(options.sampling_rate, seed),
        observers=meters.observers,
        slice_option_type=options.slice_option_type,
    )
    return capture, meters
