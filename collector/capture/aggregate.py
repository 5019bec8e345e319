"""Packets -> FlowRecords, per flow key, with active and idle timeouts as softflowd has them.

A flow is the packets with the same source and destination address, protocol, ports,
DSCP, flow label and slice (the slice is in the key so that packets of one 5-tuple with
different slice-ID options are not merged). A flow's record ends, and the next packet
starts a new one, when the packet comes more than `idle_timeout_s` after the flow's
previous packet or `active_timeout_s` or more after the record's first packet: the same
rule softflowd applies with its expiry timeouts. Defaults are the usual NetFlow ones
(30 min active, 15 s idle). Because the rule is decided by packet times alone, a file read
in one go gives the same records as one read packet by packet; `expire(now)` does the same
for live capture when no packet comes.

Two ways in, same records out:
- `add(ts_ns, fields)`: one dissected packet (live capture, the reference path).
- `add_batch(ts_ns, batch)`: a `PacketBatch` of many packets (pcap files). Flows are
  grouped with numpy (a 64-bit hash of the key, checked for collisions), cut at the
  timeouts and summed per record; Python then runs once per record, not per packet.

Packets and bytes are multiplied by the sampling rate (1:N sampling: each sampled packet
stands for N), and records carry that rate. Bytes are IP packet lengths, as in IPFIX's
octetDeltaCount. `max_flows` bounds the open records: beyond it the oldest opened is ended.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from collector.contract.records import FlowRecord
from collector.traffic.classifier import SliceClassifier
from collector.wire.dissect import PacketBatch, PacketFields

DEFAULT_ACTIVE_TIMEOUT_S = 1800.0
DEFAULT_IDLE_TIMEOUT_S = 15.0
DEFAULT_MAX_FLOWS = 1_000_000

# (source, destination, protocol, source port, destination port, dscp, flow label, slice index)
FlowKey = tuple[bytes, bytes, int, int, int, int, int, int]


@dataclass(slots=True)
class _OpenFlow:
    start: int  # first packet's time
    last: int  # latest packet's time, in arrival order (the idle rule looks at it)
    end: int  # latest time seen
    packets: int
    bytes: int


class FlowAggregator:
    def __init__(
        self,
        exporter: str,
        classifier: SliceClassifier | None = None,
        *,
        sampling_rate: int = 1,
        active_timeout_s: float = DEFAULT_ACTIVE_TIMEOUT_S,
        idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
        max_flows: int = DEFAULT_MAX_FLOWS,
        observation_domain: int = 0,
    ) -> None:
        if sampling_rate < 1:
            raise ValueError(f"sampling rate must be 1 or more (1:N), got {sampling_rate}")
        if active_timeout_s <= 0 or idle_timeout_s < 0:
            raise ValueError("the active timeout must be positive and the idle timeout not negative")
        self.exporter = exporter
        self.classifier = classifier or SliceClassifier.default()
        self.sampling_rate = sampling_rate
        self.active_ns = int(active_timeout_s * 1e9)
        self.idle_ns = int(idle_timeout_s * 1e9)
        self.max_flows = max_flows
        self.observation_domain = observation_domain
        self._open: dict[FlowKey, _OpenFlow] = {}
        self._finished: list[FlowRecord] = []

    def __len__(self) -> int:
        """Open flow records."""
        return len(self._open)

    # -- one packet --------------------------------------------------------------------------

    def add(self, ts_ns: int, fields: PacketFields) -> None:
        slice_index = self.classifier.classify_index(
            fields.source, fields.destination, fields.dscp, fields.flow_label, fields.active_sid, fields.slice_id
        )
        key = (
            fields.source,
            fields.destination,
            fields.protocol,
            fields.source_port,
            fields.destination_port,
            fields.dscp,
            fields.flow_label,
            slice_index,
        )
        flow = self._open.get(key)
        if flow is not None and (ts_ns - flow.last > self.idle_ns or ts_ns - flow.start >= self.active_ns):
            self._finish(key, flow)
            flow = None
        if flow is None:
            self._open[key] = _OpenFlow(ts_ns, ts_ns, ts_ns, 1, fields.length)
            self._bound()
            return
        flow.last = ts_ns
        if ts_ns > flow.end:
            flow.end = ts_ns
        flow.packets += 1
        flow.bytes += fields.length

    # -- many packets ------------------------------------------------------------------------

    def add_batch(self, ts_ns: np.ndarray, batch: PacketBatch) -> None:
        """Adds the packets of `batch`; `ts_ns` holds their times, row for row."""
        count = len(batch.kept)
        if not count:
            return
        slices = self.classifier.classify_arrays(
            batch.src_high, batch.src_low, batch.dst_high, batch.dst_low, batch.dscp, batch.flow_label
        ).astype(np.int64)
        for row, (active_sid, slice_id) in batch.marks.items():
            source, destination = _address_bytes(batch, row)
            slices[row] = self.classifier.classify_index(
                source, destination, int(batch.dscp[row]), int(batch.flow_label[row]), active_sid, slice_id
            )
        key_columns = (
            batch.src_high,
            batch.src_low,
            batch.dst_high,
            batch.dst_low,
            batch.protocol,
            batch.source_port,
            batch.destination_port,
            batch.dscp,
            batch.flow_label,
            slices,
        )
        group, first_rows, order = _group_rows(key_columns)  # order: by flow, arrival order within
        group, times, lengths = group[order], ts_ns[order], batch.length[order]
        group_starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])

        keys = [self._key_of(batch, int(row), int(slices[row])) for row in first_rows]
        prior = [self._open.get(key) for key in keys]
        # A new record starts at an idle gap inside a flow, or at a flow's first packet unless
        # it continues the record already open (decided below, per flow).
        cut = np.r_[True, (group[1:] != group[:-1]) | (np.diff(times) > self.idle_ns)]
        continues = np.zeros(len(keys), dtype=bool)
        for g, flow in enumerate(prior):
            if flow is not None:
                ts = int(times[group_starts[g]])
                continues[g] = not (ts - flow.last > self.idle_ns or ts - flow.start >= self.active_ns)
        self._cut_active(cut, times, group_starts, prior, continues)

        starts = np.flatnonzero(cut)
        packets = np.diff(np.r_[starts, count])
        octets = np.add.reduceat(lengths, starts)
        latest = np.maximum.reduceat(times, starts)
        lasts = times[np.r_[starts[1:], count] - 1]
        segment_group = group[starts]
        is_last_of_group = np.r_[segment_group[1:] != segment_group[:-1], True]
        for s, g in enumerate(segment_group.tolist()):
            key = keys[g]
            record = _OpenFlow(int(times[starts[s]]), int(lasts[s]), int(latest[s]), int(packets[s]), int(octets[s]))
            flow = prior[g]
            if flow is not None:
                prior[g] = None  # only a flow's first segment meets its open record
                if continues[g]:
                    record = _OpenFlow(
                        flow.start,
                        record.last,
                        max(flow.end, record.end),
                        flow.packets + record.packets,
                        flow.bytes + record.bytes,
                    )
                else:
                    self._finish(key, flow)
            if is_last_of_group[s]:
                self._open[key] = record
            else:
                self._finished.append(self._record(key, record))
        self._bound()

    def _cut_active(
        self,
        cut: np.ndarray,
        times: np.ndarray,
        group_starts: np.ndarray,
        prior: list[_OpenFlow | None],
        continues: np.ndarray,
    ) -> None:
        """Adds the active-timeout cuts to `cut`. A cut restarts the clock, so this is sequential,
        but only for the few records that last that long."""
        segment = np.cumsum(cut) - 1
        starts = np.flatnonzero(cut)
        segment_start = times[starts]
        # A flow's first segment that continues an open record counts from that record's start.
        for g in np.flatnonzero(continues).tolist():
            open_record = prior[g]
            assert open_record is not None  # `continues` marks the flows with an open record
            segment_start[segment[group_starts[g]]] = open_record.start
        record_start = segment_start[segment]
        for s in np.unique(segment[times - record_start >= self.active_ns]).tolist():
            end = starts[s + 1] if s + 1 < len(starts) else len(times)
            clock = int(segment_start[s])
            for i in range(starts[s] + 1, end):
                if int(times[i]) - clock >= self.active_ns:
                    cut[i] = True
                    clock = int(times[i])

    # -- ending records ----------------------------------------------------------------------

    def expire(self, now_ns: int) -> list[FlowRecord]:
        """Ends the records that a packet arriving at `now_ns` would end; returns all finished."""
        for key, flow in list(self._open.items()):
            if now_ns - flow.last > self.idle_ns or now_ns - flow.start >= self.active_ns:
                self._finish(key, flow)
        return self.drain()

    def flush(self) -> list[FlowRecord]:
        """Ends every open record; returns all finished records."""
        for key, flow in list(self._open.items()):
            self._finish(key, flow)
        return self.drain()

    def drain(self) -> list[FlowRecord]:
        finished, self._finished = self._finished, []
        return finished

    def _finish(self, key: FlowKey, flow: _OpenFlow) -> None:
        del self._open[key]
        self._finished.append(self._record(key, flow))

    def _bound(self) -> None:
        while len(self._open) > self.max_flows:
            key = next(iter(self._open))
            self._finish(key, self._open[key])

    def _record(self, key: FlowKey, flow: _OpenFlow) -> FlowRecord:
        source, destination, protocol, source_port, destination_port, dscp, flow_label, slice_index = key
        rate = self.sampling_rate
        return FlowRecord(
            exporter=self.exporter,
            observation_domain=self.observation_domain,
            source=address_text(source),
            destination=address_text(destination),
            protocol=protocol,
            source_port=source_port,
            destination_port=destination_port,
            dscp=dscp,
            flow_label=flow_label,
            slice=self.classifier.names[slice_index],
            packets=flow.packets * rate,
            bytes=flow.bytes * rate,
            start_ns=flow.start,
            end_ns=flow.end,
            sampling_rate=rate,
        )

    @staticmethod
    def _key_of(batch: PacketBatch, row: int, slice_index: int) -> FlowKey:
        source, destination = _address_bytes(batch, row)
        return (
            source,
            destination,
            int(batch.protocol[row]),
            int(batch.source_port[row]),
            int(batch.destination_port[row]),
            int(batch.dscp[row]),
            int(batch.flow_label[row]),
            slice_index,
        )


def _address_bytes(batch: PacketBatch, row: int) -> tuple[bytes, bytes]:
    raw = struct.pack(
        "!QQQQ", int(batch.src_high[row]), int(batch.src_low[row]), int(batch.dst_high[row]), int(batch.dst_low[row])
    )
    return raw[:16], raw[16:]


@lru_cache(maxsize=65536)
def address_text(packed: bytes) -> str:
    """Compressed IPv6, or dotted IPv4 for an IPv4-mapped address."""
    address = ipaddress.IPv6Address(packed)
    return str(address.ipv4_mapped) if address.ipv4_mapped else address.compressed


_MIX = (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93)


def _group_rows(columns: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Groups rows with equal values in every column. Returns a group number per row, the
    first row of each group, and the rows sorted by group (arrival order kept within one).

    The columns are hashed to 64 bits so that one stable sort does the grouping; if two
    different keys ever share a hash, the rows are grouped exactly with a lexicographic sort."""
    columns = [np.asarray(column).astype(np.uint64) for column in columns]
    digest = np.zeros(len(columns[0]), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for i, column in enumerate(columns):
            digest = (digest ^ column) * np.uint64(_MIX[i % 4])
            digest ^= digest >> np.uint64(29)
    order = np.argsort(digest, kind="stable")
    ordered = digest[order]
    group, first_rows = _number_runs(order, ordered[1:] != ordered[:-1])
    representative = first_rows[group]
    if all(np.array_equal(column, column[representative]) for column in columns):
        return group, first_rows, order
    order = np.lexsort(columns[::-1])  # stable: arrival order kept within a key
    differs = np.zeros(len(order) - 1, dtype=bool)
    for column in columns:
        ordered = column[order]
        differs |= ordered[1:] != ordered[:-1]
    group, first_rows = _number_runs(order, differs)
    return group, first_rows, order


def _number_runs(order: np.ndarray, differs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group numbers from rows in `order` whose neighbours `differ` where a new group begins."""
    begins = np.r_[True, differs]
    group = np.empty(len(order), dtype=np.int64)
    group[order] = np.cumsum(begins) - 1
    return group, order[begins]
