"""The records that flow between xnetmon's parts.

These names are the contract of docs/architecture.md ("The data that flows"): collectors produce them,
the analyzer consumes them. Fields may grow; existing ones keep their meaning. Hot-path
records are frozen, slotted dataclasses; pydantic models live at the edges (config, API).
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from enum import Enum
from typing import Annotated

from annotated_types import Ge

# Field types that say more than `int`: the codec checks them and the API's schema shows them.
Count = Annotated[int, Ge(0)]  # a number of packets or events: never negative, adds up over time


@dataclass(frozen=True, slots=True)
class Slice:
    """A network slice as the data plane marks it."""

    name: str
    dscp: int  # 0..63, the traffic class probes of this slice carry
    slice_id: int | None = None  # 32-bit slice/NRP ID of the Hop-by-Hop option, if used
    flow_label: int | None = None  # fixed IPv6 flow label for probes, if pinned


@dataclass(frozen=True, slots=True)
class Target:
    """Something a collector probes: a named site or host and its address."""

    name: str
    address: str
    port: int = 862


class LossDirection(str, Enum):
    """Where a lost probe was lost, as far as the reflector's counters tell."""

    NONE = "none"  # the reply came back
    FORWARD = "forward"  # the reflector never saw the request
    REVERSE = "reverse"  # the reflector answered, the answer never arrived
    UNKNOWN = "unknown"  # lost, but no stateful reflector counter to tell which way


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One probe packet's fate. Times are in nanoseconds (integers: no float drift)."""

    target: str
    slice: str
    seq: int
    sent_ns: int  # wall-clock send time (CLOCK_REALTIME, ns)
    rtt_ns: int | None  # None when lost
    loss: LossDirection = LossDirection.NONE
    forward_owd_ns: int | None = None  # only when both clocks claim synchronisation
    reverse_owd_ns: int | None = None
    reflector_seq: int | None = None
    reflector_hop_limit: int | None = None  # hop limit the request arrived with
    reflector_dscp: int | None = None  # DSCP the request arrived with (Class of Service TLV)
    reply_hop_limit: int | None = None  # hop limit the reply arrived with
    reply_dscp: int | None = None  # DSCP the reply arrived with
    clock_error_ns: int | None = None  # sum of both ends' error estimates
    duplicate: bool = False
    icmp_error: str | None = None  # e.g. "port unreachable from 2001:db8::1": why it was lost

    @property
    def lost(self) -> bool:
        return self.rtt_ns is None


# -- paths (Paris traceroute) -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FlowId:
    """What ECMP hashes on, held constant for every probe of one trace (Paris traceroute).

    For UDP and TCP the ports; for ICMPv6 echo the identifier (`source_port`) with a payload
    that keeps the checksum constant. The flow label goes into every probe's IPv6 header.
    """

    protocol: str  # "udp" | "icmp" | "tcp"
    flow_label: int  # 0: none chosen (the kernel may put its own)
    source_port: int = 0  # UDP/TCP source port, ICMPv6 echo identifier
    destination_port: int = 0  # UDP/TCP destination port; 0 for ICMPv6

    def __str__(self) -> str:
        ports = (
            f" id {self.source_port}"
            if self.protocol == "icmp"
            else f" ports {self.source_port}>{self.destination_port}"
        )
        return f"{self.protocol} flow label 0x{self.flow_label:05x}{ports}"


class HopAnswer(str, Enum):
    """What came back for one trace probe."""

    NONE = "none"  # silence: a star
    TIME_EXCEEDED = "time-exceeded"  # a router on the way
    REACHED = "reached"  # the target itself answered (echo reply, port unreachable, SYN-ACK, RST)
    UNREACHABLE = "unreachable"  # a router refused to forward (no route, prohibited): the trace ends there


@dataclass(frozen=True, slots=True)
class HopProbe:
    """One trace probe's fate at one hop limit. Times in nanoseconds."""

    hop: int  # the hop limit it was sent with
    seq: int  # its number within the trace
    sent_ns: int  # wall-clock send time
    answer: HopAnswer
    responder: str | None = None  # who answered; None for a star
    rtt_ns: int | None = None
    detail: str | None = None  # e.g. "no route to destination" for UNREACHABLE
    quoted_dscp: int | None = None  # DSCP the probe still carried at the responder (from the ICMP quote)

    @property
    def lost(self) -> bool:
        return self.answer is HopAnswer.NONE


@dataclass(frozen=True, slots=True)
class PathObservation:
    """The hop list one flow took from a source to a target in a slice, when it was seen.

    `hops[i]` is the address that answered at hop limit i+1, None where every probe went
    unanswered; the last entry is the target when `reached`. The analyzer maps hops to links
    and compares fingerprints to notice path changes.
    """

    source: str  # the source site or address
    target: str
    slice: str
    flow: FlowId
    hops: tuple[str | None, ...]
    reached: bool
    observed_ns: int  # wall-clock time the trace finished

    @property
    def fingerprint(self) -> str:
        return path_fingerprint(self.hops)


def path_fingerprint(hops: tuple[str | None, ...]) -> str:
    """A stable hash of a hop list: equal hop lists give equal fingerprints on any host and
    Python version (SHA-256 of a canonical text, not `hash()`, which is salted per process)."""
    canonical = "\n".join("*" if h is None else ipaddress.ip_address(h).compressed for h in hops)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


# -- interval summaries ------------------------------------------------------------------

# RTT histogram bucket upper bounds in seconds, fixed for every path so that histograms
# aggregate across paths and slices. Every SLA delay bound is one of them (a verdict then
# reads a bucket count, not an estimate). 12 finite buckets + the +Inf bucket keep one
# (path, slice) pair within the metric contract's budget of 25 series.
RTT_BUCKETS_S: tuple[float, ...] = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.010,
    0.020,
    0.030,
    0.050,
    0.100,
    0.150,
    0.300,
    1.0,
)
RTT_BUCKETS_NS: tuple[int, ...] = tuple(round(b * 1e9) for b in RTT_BUCKETS_S)


@dataclass(frozen=True, slots=True)
class PathKey:
    """One measured path: from a site, to a target, in a slice, with a probe kind."""

    source: str  # site name
    target: str  # target name
    slice: str
    kind: str  # "stamp" | "icmp"


class LossCounts:
    """`lost` and `loss_ratio` for any record with sent and lost_forward/reverse/unknown."""

    __slots__ = ()
    sent: int
    lost_forward: int
    lost_reverse: int
    lost_unknown: int

    @property
    def lost(self) -> int:
        return self.lost_forward + self.lost_reverse + self.lost_unknown

    @property
    def loss_ratio(self) -> float:
        return self.lost / self.sent if self.sent else 0.0


@dataclass(frozen=True, slots=True)
class PathCounts(LossCounts):
    """What a path delivered over a span of time: packets and their fates, and the RTT
    histogram with its sum. Spans add up: a path's totals are the sums of its windows'."""

    sent: Count
    received: Count
    lost_forward: Count
    lost_reverse: Count
    lost_unknown: Count
    duplicates: Count
    reordered: Count  # RFC 4737: replies whose sequence number is below one already received
    rtt_buckets: tuple[Count, ...]  # per RTT_BUCKETS_NS bound, not cumulative; last is +Inf
    rtt_sum_ns: int


@dataclass(frozen=True, slots=True)
class PathWindow(PathCounts):
    """One path over one interval: what the analyzer sees instead of per-packet data.

    Probes belong to the window in which they were sent, whenever their fate settles.
    Windows are aligned on wall-clock multiples of their length, so the windows of every
    agent line up. `seq` numbers a path's windows so a receiver can drop duplicates and
    notice gaps. Times and delays are integer nanoseconds. Its counts (`PathCounts`) come first.
    """

    key: PathKey
    target_address: str
    seq: int
    start_ns: int
    end_ns: int
    rtt_min_ns: int | None
    rtt_p50_ns: int | None
    rtt_p90_ns: int | None
    rtt_p99_ns: int | None
    rtt_max_ns: int | None
    ipdv_mean_abs_ns: int | None  # RFC 3393, consecutive sequence numbers
    pdv_p99_ns: int | None  # RFC 5481: p99 of delay above the window's minimum
    forward_owd_p50_ns: int | None  # one-way delays, only when both clocks claim sync
    reverse_owd_p50_ns: int | None
    forward_owd_p99_ns: int | None
    reverse_owd_p99_ns: int | None
    clock_error_ns: int | None  # worst summed error estimate of the one-way delays
    dscp_remarked: Count  # replies whose DSCP, at either end, was not the slice's
    reflector_hop_limit: int | None  # latest hop limit the request arrived with at the far end
    reply_hop_limit: int | None  # latest hop limit the reply arrived with here
    path_fingerprint: str | None  # of the latest trace of this path, if any
    icmp_errors: Count  # losses explained by an ICMP error (e.g. no reflector listening)


@dataclass(frozen=True, slots=True)
class CollectorHealth:
    """An agent's own state, so that its trouble is never mistaken for the network's."""

    site: str
    observed_ns: int
    scheduling_lag_p99_ns: int  # how late probes left compared with their plan, this window
    scheduling_lag_max_ns: int
    probes_sent_total: int
    send_errors_total: int
    receive_errors_total: int
    socket_drops_total: int  # datagrams the kernel dropped on our sockets (SO_RXQ_OVFL / /proc)
    cpu_seconds_total: float
    sessions: int  # (target, slice, kind) schedules running
    windows_dropped_total: int  # windows the spool had to discard while the analyzer was away
    spool_depth: int  # windows waiting to be shipped


# -- flows (export receiver, packet capture) --------------------------------------------


@dataclass(frozen=True, slots=True)
class FlowRecord:
    """One flow as an exporter or a capture saw it, classified into a slice.

    `packets` and `bytes` are already scaled by the sampling rate (`sampling_rate` says by
    how much; 1 when unsampled), so records from differently sampled exporters add up.
    Addresses are text (compressed IPv6 or dotted IPv4). Times are wall-clock ns.
    """

    exporter: str  # exporter address, or "capture:<interface or file>"
    observation_domain: int  # IPFIX observation domain / NetFlow v9 source id / sFlow sub-agent (0 for captures)
    source: str
    destination: str
    protocol: int  # IP protocol number (6 TCP, 17 UDP, 58 ICMPv6)
    source_port: int
    destination_port: int
    dscp: int
    flow_label: int
    slice: str
    packets: int
    bytes: int
    start_ns: int
    end_ns: int
    sampling_rate: int = 1
    direction: str = "unknown"  # "in" | "out" (towards / away from the site's prefixes) | "unknown"
    segments: tuple[str, ...] = ()  # SRv6 segment list (IE 497 / SRH), when present
