"""Passive TCP round-trip time and retransmissions from packets seen at one capture point.

Two timings, each for what it fits. A segment that occupies sequence space (data, SYN, FIN)
is timed by the first acknowledgment that covers it, from the oldest segment that
acknowledgment newly covers, and not at all when one of those was retransmitted (Karn):
the rule of the sender's own kernel, so a capture point next to a sender sees the RTT its
`ss -ti` shows. A pure ACK, which nothing acknowledges, is timed by its TSval's echo.

The echo method is pping's (Kathleen Nichols): every TCP segment with the timestamp option
(RFC 7323) carries TSval, the sender's clock, and TSecr, the latest TSval it received. The
first time a TSval is seen in one direction its capture time is kept; the first segment in
the opposite direction whose TSecr echoes it closes the sample. A TSval seen again (several
segments sent in one clock tick, retransmissions, duplicates) is not timed again, and a
TSecr that was already matched (duplicate ACKs) closes nothing, with one exception: the
data segments of the burst that closed a sample (same TSecr and same TSval: sent in one
clock tick in answer to one segment, not retransmitted) are each a sample from the same
echoed segment. They wait one behind the other in a queue beyond the capture point, and
the sender's kernel times each of them; timing only the burst's head, which waits least,
read 25% below the sender's `ss -ti` across a 20 Mbit/s bottleneck.

What a sample measures: the time from the capture point to the host that echoes and back,
so the part of the path *beyond* the capture point as seen from the TSval's sender, plus
the echoing host's delayed-ACK wait. Queues before the capture point are not in it. The
two directions of a connection time the two sides of the capture point: their mean RTTs
added up are the connection's round trip as its endpoints' kernels see it. Two peers
define their figure differently (`bench/passive_rtt.py` measures both beside ours):
- tshark's `tcp.analysis.ack_rtt` times an ACK from the segment that ends exactly at its
  acknowledgment number, the newest one it covers; ours, as the kernel, from the oldest it
  newly covers. Behind a receiver that acknowledges every second segment the two differ by
  one segment's spacing: after a 20 Mbit/s queue, one 1,514-octet frame's 0.6 ms.
- The sender's `ss -ti` rtt is its kernel's per-ACK sample smoothed by 7/8 per ACK, taken
  from the segment's transmission at the TCP layer to the ACK's processing: it includes
  the sender's own stack (its qdisc, and ACKs waiting in the socket's backlog while the
  application holds the socket in a send), which no capture point sees.
- The echo of a TSval includes the echoing host's answer time: its delayed-ACK wait, or,
  for a sender echoing in data, the time until it sends again, which is long when it is
  short of data or CPU; the round trip added up from the two sides then reads high.
A sample is filed under the slice of the timed segment (the one carrying the TSval) and the
remote prefix of the echoing host (/48 for IPv6, /24 for IPv4 by default).

A retransmission is a segment that occupies sequence space (payload, SYN or FIN) of which
some was already seen in that direction. Segments lost before the capture point never
passed it, so their retransmissions look like out-of-order arrivals and are not counted:
the count is of losses beyond the capture point, the same part of the path as the RTT.

Choices:
- The distribution is a fixed-bucket histogram on `collector.contract.records.RTT_BUCKETS_S` (the
  same bounds as the probes' RTT, which include every SLA bound) with the exact minimum and
  maximum; percentiles interpolate inside a bucket, clamped to [min, max].
- The flow table holds one entry per direction, at most `max_flows` of them: idle ones go
  after `idle_timeout_s` of capture time, and when it is full of live ones the oldest
  entry goes. Each direction keeps at most `MAX_PENDING_TSVALS` unanswered TSvals and
  `MAX_SEQUENCE_RANGES` seen sequence ranges, so a flow's memory is bounded too.
- Only the first packet of a direction is fully dissected and classified; later ones
  cost a few struct unpacks.
"""

from __future__ import annotations

import bisect
import ipaddress
import struct
from collections import deque
from dataclasses import dataclass

from collector.contract.records import RTT_BUCKETS_NS, RTT_BUCKETS_S
from collector.traffic.classifier import SliceClassifier
from collector.wire.dissect import IPV4_MAPPED_PREFIX, dissect_ip
from collector.wire.ipv6_ext import EXTENSION_HEADERS, MalformedPacket, walk_extension_headers

PROTO_TCP = 6
MAX_PENDING_TSVALS = 512
MAX_UNACKED_SEGMENTS = 1024
MAX_SEQUENCE_RANGES = 32
OTHER_PREFIXES = "other"  # where samples go once `max_prefixes` prefixes are tracked

_IPV6_FIXED = struct.Struct("!4xHB1x16s16s")  # payload length, next header, addresses
_IPV4_FIXED = struct.Struct("!BxHxxHxB2x4s4s")  # version/IHL, total length, fragment, protocol, addresses
_TCP_FIXED = struct.Struct("!HHIIBB")  # ports, seq, ack, data offset, flags
_TIMESTAMPS = struct.Struct("!II")
_SYN, _FIN, _ACK = 0x02, 0x01, 0x10
_SEQ_MOD = 1 << 32
_HALF = 1 << 31


@dataclass(frozen=True, slots=True)
class RttSummary:
    """Samples and retransmissions of one slice, or one (slice, remote prefix)."""

    samples: int
    min_s: float | None  # None without samples, as the percentiles
    p50_s: float | None
    p90_s: float | None
    p99_s: float | None
    max_s: float | None
    sum_s: float
    bucket_counts: tuple[int, ...]  # per RTT_BUCKETS_S bound, then the overflow; not cumulative
    retransmissions: int


@dataclass(frozen=True, slots=True)
class RttReport:
    by_slice: dict[str, RttSummary]
    by_prefix: dict[tuple[str, str], RttSummary]  # (slice, remote prefix)
    flows: int  # directions in the table now
    malformed: int


class _Distribution:
    """Histogram plus exact extremes and retransmissions; merged into reports."""

    __slots__ = ("counts", "sum_ns", "min_ns", "max_ns", "retransmissions")

    def __init__(self) -> None:
        self.counts = [0] * (len(RTT_BUCKETS_NS) + 1)
        self.sum_ns = 0
        self.min_ns: int | None = None
        self.max_ns: int | None = None
        self.retransmissions = 0

    def add(self, rtt_ns: int) -> None:
        self.counts[bisect.bisect_left(RTT_BUCKETS_NS, rtt_ns)] += 1
        self.sum_ns += rtt_ns
        if self.min_ns is None or rtt_ns < self.min_ns:
            self.min_ns = rtt_ns
        if self.max_ns is None or rtt_ns > self.max_ns:
            self.max_ns = rtt_ns

    def merge(self, other: _Distribution) -> None:
        self.counts = [a + b for a, b in zip(self.counts, other.counts)]
        self.sum_ns += other.sum_ns
        self.retransmissions += other.retransmissions
        for value in (other.min_ns, other.max_ns):
            if value is not None:
                self.min_ns = value if self.min_ns is None else min(self.min_ns, value)
                self.max_ns = value if self.max_ns is None else max(self.max_ns, value)

    def summary(self) -> RttSummary:
        samples = sum(self.counts)
        p50, p90, p99 = (self._quantile(q, samples) for q in (0.5, 0.9, 0.99))
        return RttSummary(
            samples,
            _seconds(self.min_ns),
            p50,
            p90,
            p99,
            _seconds(self.max_ns),
            self.sum_ns / 1e9,
            tuple(self.counts),
            self.retransmissions,
        )

    def _quantile(self, q: float, samples: int) -> float | None:
        if not samples or self.min_ns is None or self.max_ns is None:
            return None
        rank = q * samples
        seen = 0
        for index, count in enumerate(self.counts):
            if count and seen + count >= rank:
                low = max(RTT_BUCKETS_S[index - 1] if index else 0.0, self.min_ns / 1e9)
                high = min(RTT_BUCKETS_S[index] if index < len(RTT_BUCKETS_S) else self.max_ns / 1e9, self.max_ns / 1e9)
                return low + (high - low) * max(rank - seen, 0) / count
            seen += count
        return self.max_ns / 1e9


def _seconds(value_ns: int | None) -> float | None:
    return None if value_ns is None else value_ns / 1e9


class _Direction:
    """What one direction of one connection has shown so far."""

    __slots__ = ("distribution", "pending", "newest_tsval", "ranges", "last_seq", "last_seen_ns", "burst", "unacked")

    def __init__(self, distribution: _Distribution, ts_ns: int) -> None:
        self.distribution = distribution  # where this direction's samples and retransmissions go
        self.pending: dict[int, int] = {}  # TSval -> first capture time, oldest first
        self.newest_tsval: int | None = None
        self.ranges: list[list[int]] = []  # seen sequence space, unwrapped, sorted [start, end)
        self.last_seq: int | None = None  # unwrapped, to unwrap the next one
        self.last_seen_ns = ts_ns
        # (TSecr, own TSval, capture time of the echoed TSval) of the data segment that last
        # closed a sample: the rest of its burst times the same echo again.
        self.burst: tuple[int, int, int] | None = None
        # Segments that occupy sequence space, not acknowledged yet, oldest first: (unwrapped
        # end, capture time, retransmitted).
        self.unacked: deque[tuple[int, int, bool]] = deque(maxlen=MAX_UNACKED_SEGMENTS)

    def match_ack(self, ack: int) -> int | None:
        """The capture time of the oldest segment an acknowledgment number newly covers, as the
        sender's kernel times it; None if it covers none, or a retransmitted one (Karn)."""
        unacked = self.unacked
        if not unacked or self.last_seq is None:
            return None
        acked = self.last_seq + ((ack - self.last_seq + _HALF) % _SEQ_MOD) - _HALF
        oldest = None
        ambiguous = False
        while unacked and unacked[0][0] <= acked:
            _end, sent_ns, retransmitted = unacked.popleft()
            if oldest is None:
                oldest = sent_ns
            ambiguous = ambiguous or retransmitted
        return None if ambiguous else oldest

    def record_tsval(self, tsval: int, ts_ns: int) -> None:
        newest = self.newest_tsval
        if newest is not None and not 0 < (tsval - newest) % _SEQ_MOD < _HALF:
            return  # not newer than a TSval already seen: not its first occurrence
        self.newest_tsval = tsval
        pending = self.pending
        pending[tsval] = ts_ns
        if len(pending) > MAX_PENDING_TSVALS:
            del pending[next(iter(pending))]

    def match_tsecr(self, tsecr: int) -> int | None:
        """The capture time of the echoed TSval if it is still waiting; it and older ones go."""
        pending = self.pending
        sent_ns = pending.get(tsecr)
        if sent_ns is None:
            return None
        for tsval in list(pending):  # an echo of TSval t means older ones will not be echoed
            del pending[tsval]
            if tsval == tsecr:
                break
        return sent_ns

    def is_retransmission(self, seq: int, length: int) -> bool:
        """Whether [seq, seq+length) overlaps sequence space already seen; records it."""
        if self.last_seq is None:
            start = seq
        else:
            start = self.last_seq + ((seq - self.last_seq + _HALF) % _SEQ_MOD) - _HALF
        self.last_seq = start
        end = start + length
        ranges = self.ranges
        index = bisect.bisect_left(ranges, [start])
        overlaps = (index > 0 and ranges[index - 1][1] > start) or (index < len(ranges) and ranges[index][0] < end)
        # merge [start, end) into the sorted, disjoint list
        low = index - 1 if index > 0 and ranges[index - 1][1] >= start else index
        high = index
        while high < len(ranges) and ranges[high][0] <= end:
            high += 1
        if low < high:
            start = min(start, ranges[low][0])
            end = max(end, ranges[high - 1][1])
        ranges[low:high] = [[start, end]]
        if len(ranges) > MAX_SEQUENCE_RANGES:  # forget the oldest gap: treat it as seen
            ranges[0:2] = [[ranges[0][0], ranges[1][1]]]
        return overlaps


class PassiveTcpRtt:
    """Feed every TCP packet of a capture point to `observe`; read `report()` any time."""

    def __init__(
        self,
        classifier: SliceClassifier | None = None,
        *,
        remote_prefix_len: int = 48,
        max_flows: int = 100_000,
        remote_prefix_len_v4: int = 24,
        idle_timeout_s: float = 120.0,
        max_prefixes: int = 10_000,
    ) -> None:
        if not 0 <= remote_prefix_len <= 128 or not 0 <= remote_prefix_len_v4 <= 32:
            raise ValueError("remote prefix lengths must be 0..128 (IPv6) and 0..32 (IPv4)")
        if max_flows < 1:
            raise ValueError("max_flows must be at least 1")
        self._classifier = classifier or SliceClassifier.default()
        self._prefix_len = remote_prefix_len
        self._prefix_len_v4 = remote_prefix_len_v4
        self._max_flows = max_flows
        self._idle_ns = int(idle_timeout_s * 1e9)
        self._max_prefixes = max_prefixes
        self._directions: dict[tuple[bytes, bytes, int, int], _Direction] = {}
        self._distributions: dict[tuple[str, str], _Distribution] = {}
        self._next_sweep_ns: int | None = None
        self.malformed = 0
        self.evicted = 0  # live directions dropped because the table was full

    def observe(self, ts_ns: int, packet: bytes | memoryview, offset: int = 0) -> None:
        """One IPv6 or IPv4 packet starting at `offset`, captured at `ts_ns`; non-TCP is ignored."""
        try:
            self._observe(ts_ns, packet, offset)
        except (MalformedPacket, struct.error, IndexError):
            self.malformed += 1

    def _observe(self, ts_ns: int, packet: bytes | memoryview, offset: int) -> None:
        version = packet[offset] >> 4
        if version == 6:
            payload_length, next_header, source, destination = _IPV6_FIXED.unpack_from(packet, offset)
            if next_header in EXTENSION_HEADERS:
                chain = walk_extension_headers(packet, offset)
                next_header, tcp = chain.upper_protocol, chain.upper_offset
            else:
                tcp = offset + 40
            if next_header != PROTO_TCP:
                return
            ip_end = offset + 40 + payload_length
        elif version == 4:
            version_ihl, total_length, fragment, protocol, source4, destination4 = _IPV4_FIXED.unpack_from(
                packet, offset
            )
            if protocol != PROTO_TCP or fragment & 0x1FFF:
                return
            header_length = (version_ihl & 0x0F) * 4
            if header_length < 20 or total_length < header_length:
                raise MalformedPacket("bad IPv4 header or total length")
            tcp = offset + header_length
            ip_end = offset + total_length
            source, destination = IPV4_MAPPED_PREFIX + source4, IPV4_MAPPED_PREFIX + destination4
        else:
            raise MalformedPacket(f"IP version {version}")
        source_port, destination_port, seq, ack, data_offset, flags = _TCP_FIXED.unpack_from(packet, tcp)
        header_length = (data_offset >> 4) * 4
        if header_length < 20 or tcp + header_length > len(packet) or tcp + header_length > ip_end:
            raise MalformedPacket("bad TCP data offset")
        timestamps = _timestamp_option(packet, tcp + 20, tcp + header_length)

        key = (source, destination, source_port, destination_port)
        direction = self._directions.get(key)
        if direction is None:
            direction = self._new_direction(key, ts_ns, packet, offset)
        direction.last_seen_ns = ts_ns
        payload = ip_end - tcp - header_length
        occupied = payload + (1 if flags & _SYN else 0) + (1 if flags & _FIN else 0)
        retransmitted = False
        if occupied > 0:
            retransmitted = direction.is_retransmission(seq, occupied)
            if retransmitted:
                direction.distribution.retransmissions += 1
            assert direction.last_seq is not None  # set by is_retransmission
            direction.unacked.append((direction.last_seq + occupied, ts_ns, retransmitted))
        reverse = self._directions.get((destination, source, destination_port, source_port)) if flags & _ACK else None
        if reverse is not None:
            sent_ns = reverse.match_ack(ack)
            if sent_ns is not None and ts_ns >= sent_ns:
                reverse.distribution.add(ts_ns - sent_ns)
        if timestamps is None:
            return
        tsval, tsecr = timestamps
        if occupied == 0:  # what occupies sequence space is timed by its acknowledgment
            direction.record_tsval(tsval, ts_ns)
        if reverse is not None:
            sent_ns = reverse.match_tsecr(tsecr)
            if sent_ns is not None:
                direction.burst = (tsecr, tsval, sent_ns) if payload > 0 else None
            elif payload > 0 and not retransmitted and direction.burst is not None:
                # Every data segment of the burst the echoed segment set off: sent in the
                # same clock tick (same TSval) in answer to the same segment (same TSecr).
                # Each waited its own turn in the queues beyond the capture point, as the
                # sender's kernel times each of them; the first alone is the burst's head.
                echoed, burst_tsval, burst_sent_ns = direction.burst
                if echoed == tsecr and burst_tsval == tsval:
                    sent_ns = burst_sent_ns
            if sent_ns is not None and ts_ns >= sent_ns:
                reverse.distribution.add(ts_ns - sent_ns)

    def _new_direction(self, key, ts_ns: int, packet, offset: int) -> _Direction:
        self._expire(ts_ns)
        if len(self._directions) >= self._max_flows:
            del self._directions[next(iter(self._directions))]
            self.evicted += 1
        fields = dissect_ip(packet, offset)
        slice_name = self._classifier.classify(
            fields.source, fields.destination, fields.dscp, fields.flow_label, fields.active_sid, fields.slice_id
        )
        prefix = self._remote_prefix(key[1])
        distribution = self._distributions.get((slice_name, prefix))
        if distribution is None:
            if len(self._distributions) >= self._max_prefixes:
                prefix = OTHER_PREFIXES
            distribution = self._distributions.setdefault((slice_name, prefix), _Distribution())
        direction = self._directions[key] = _Direction(distribution, ts_ns)
        return direction

    def _remote_prefix(self, address: bytes) -> str:
        network: ipaddress.IPv4Network | ipaddress.IPv6Network
        if address.startswith(IPV4_MAPPED_PREFIX):
            network = ipaddress.IPv4Network((address[12:], self._prefix_len_v4), strict=False)
        else:
            network = ipaddress.IPv6Network((address, self._prefix_len), strict=False)
        return str(network)

    def _expire(self, now_ns: int) -> None:
        """Drop directions idle for longer than the timeout; at most once a tenth of it."""
        if self._next_sweep_ns is not None and now_ns < self._next_sweep_ns:
            return
        self._next_sweep_ns = now_ns + self._idle_ns // 10
        horizon = now_ns - self._idle_ns
        for key in [k for k, d in self._directions.items() if d.last_seen_ns < horizon]:
            del self._directions[key]

    def report(self) -> RttReport:
        by_slice: dict[str, _Distribution] = {}
        distributions = list(self._distributions.items())  # one step: a capture thread may be adding
        for (slice_name, _), distribution in distributions:
            by_slice.setdefault(slice_name, _Distribution()).merge(distribution)
        return RttReport(
            {name: d.summary() for name, d in sorted(by_slice.items())},
            {key: d.summary() for key, d in sorted(distributions, key=lambda item: item[0])},
            len(self._directions),
            self.malformed,
        )


def _timestamp_option(packet, position: int, end: int) -> tuple[int, int] | None:
    """(TSval, TSecr) from the TCP options between `position` and `end`, if present."""
    while position < end:
        kind = packet[position]
        if kind == 0:  # end of option list
            return None
        if kind == 1:  # no-operation
            position += 1
            continue
        if position + 1 >= end:
            raise MalformedPacket("truncated TCP option")
        length = packet[position + 1]
        if length < 2 or position + length > end:
            raise MalformedPacket("bad TCP option length")
        if kind == 8:
            if length != 10:
                raise MalformedPacket("bad TCP timestamp option length")
            return _TIMESTAMPS.unpack_from(packet, position + 2)
        position += length
    return None
