"""sFlow version 5 datagrams (sflow.org, "sFlow Version 5", 2004) -> sampled packets.

Layout read here (all fields 32-bit big-endian unless said, opaque data padded to 4):

- datagram: version (5), agent address type (1 IPv4, 2 IPv6), agent address (4 or 16
  octets), sub-agent id, sequence number, uptime (ms), sample count, samples;
- sample: data format (enterprise << 12 | format), length, then the sample. Read: flow
  sample (0:1) = sequence, source id, sampling rate, sample pool, drops, input, output,
  record count, records; expanded flow sample (0:3) = the same with source id and
  interfaces as (format, value) pairs. Counter samples (0:2, 0:4) carry interface
  counters, not traffic per slice, and are skipped, as are other enterprises' formats;
- flow record: data format, length, data. Read: raw packet header (0:1) = header protocol
  (1 Ethernet, 11 IPv4, 12 IPv6), frame length, stripped octets, header length, header.
  Other records (sampled IPv4/IPv6 summaries, switch and router data) are skipped.

Each raw header is dissected (`collector.wire.dissect`) and becomes one flow record of 1
packet and the IP packet's length in octets, scaled later by the sample's sampling rate:
in sFlow every sample carries its own rate, so rates are per record. Headers that are not
IP are skipped; headers too short to dissect are counted as malformed (kind "header").
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from collector.flow_export.datasets import FlowColumns
from collector.flow_export.export_state import DecodedFlows, MalformedMessage
from collector.wire.dissect import dissect_ethernet, dissect_ip
from collector.wire.ipv6_ext import MalformedPacket

VERSION = 5
PROTOCOL = "sflow"
WORD = struct.Struct("!I")
FLOW_SAMPLE = struct.Struct("!IIIIIIII")  # seq, source id, rate, pool, drops, in, out, records
EXPANDED_FLOW_SAMPLE = struct.Struct("!IIIIIIIIIII")  # seq, id type, id index, rate, pool, drops,
# in format, in value, out format, out value, records
RECORD_HEADER = struct.Struct("!II")
RAW_HEADER = struct.Struct("!IIII")  # protocol, frame length, stripped, header length
FORMAT_FLOW_SAMPLE, FORMAT_EXPANDED_FLOW_SAMPLE, FORMAT_RAW_HEADER = 1, 3, 1
HEADER_ETHERNET, HEADER_IPV4, HEADER_IPV6 = 1, 11, 12
MAX_SAMPLES = 10_000  # far above what fits in a datagram: refuses absurd counts early


def decode_sflow(
    datagram: bytes | memoryview, exporter: str, now: float, count_malformed: Callable[[str, str], None]
) -> list[DecodedFlows]:
    """The sampled packets of one datagram as one batch of flow columns (empty when none)."""
    view = memoryview(datagram)
    reader = _Reader(view)
    if reader.word() != VERSION:
        raise MalformedMessage("version", "not an sFlow version 5 datagram")
    address_type = reader.word()
    if address_type not in (1, 2):
        raise MalformedMessage("agent-address", f"agent address type {address_type}")
    reader.skip(4 if address_type == 1 else 16)
    sub_agent = reader.word()
    reader.skip(8)  # sequence number, uptime
    sample_count = reader.word()
    if sample_count > MAX_SAMPLES:
        raise MalformedMessage("sample-count", f"{sample_count} samples")
    packets: list = []
    rates: list[float] = []
    for _ in range(sample_count):
        data_format, length = reader.word(), reader.word()
        sample = reader.take(length)
        if data_format == FORMAT_FLOW_SAMPLE:
            fixed = FLOW_SAMPLE
        elif data_format == FORMAT_EXPANDED_FLOW_SAMPLE:
            fixed = EXPANDED_FLOW_SAMPLE
        else:
            continue  # counter samples, other enterprises
        _flow_sample(sample, fixed, packets, rates, count_malformed)
    if reader.remaining:
        raise MalformedMessage("length", f"{reader.remaining} octets after the last sample")
    if not packets:
        return []
    now_ms = int(now * 1000)
    count = len(packets)
    columns = FlowColumns(
        source=[p.source for p in packets],
        destination=[p.destination for p in packets],
        protocol=[p.protocol for p in packets],
        source_port=[p.source_port for p in packets],
        destination_port=[p.destination_port for p in packets],
        dscp=[p.dscp for p in packets],
        flow_label=[p.flow_label for p in packets],
        packets=[1] * count,
        octets=[p.length for p in packets],
        start_ms=[now_ms] * count,
        end_ms=[now_ms] * count,
        direction=["unknown"] * count,
        segments=None,
        sampler=None,
        sampling_interval=None,
        active_sid=[p.active_sid for p in packets],
        slice_id=[p.slice_id for p in packets],
    )
    return [DecodedFlows(PROTOCOL, exporter, sub_agent, columns, rates[-1], rates)]


def _flow_sample(
    sample: memoryview,
    fixed: struct.Struct,
    packets: list,
    rates: list[float],
    count_malformed: Callable[[str, str], None],
) -> None:
    if len(sample) < fixed.size:
        raise MalformedMessage("sample-length", "flow sample shorter than its fixed fields")
    values = fixed.unpack_from(sample)
    rate, record_count = values[2 if fixed is FLOW_SAMPLE else 3], values[-1]
    reader = _Reader(sample[fixed.size :])
    for _ in range(record_count):
        record_format, length = reader.word(), reader.word()
        record = reader.take(length)
        if record_format != FORMAT_RAW_HEADER:
            continue
        if len(record) < RAW_HEADER.size:
            raise MalformedMessage("record-length", "raw packet header record cut short")
        header_protocol, _frame_length, _stripped, header_length = RAW_HEADER.unpack_from(record)
        if header_length > len(record) - RAW_HEADER.size:
            raise MalformedMessage("record-length", "raw packet header longer than its record")
        header = record[RAW_HEADER.size : RAW_HEADER.size + header_length]
        try:
            if header_protocol == HEADER_ETHERNET:
                fields = dissect_ethernet(header)
            elif header_protocol in (HEADER_IPV4, HEADER_IPV6):
                fields = dissect_ip(header)
            else:
                fields = None
        except MalformedPacket:
            count_malformed(PROTOCOL, "header")
            continue
        if fields is not None:
            packets.append(fields)
            rates.append(float(max(rate, 1)))
    if reader.remaining:
        raise MalformedMessage("sample-length", "octets after the last flow record of a sample")


class _Reader:
    """Consumes 32-bit words and padded opaque fields, raising MalformedMessage past the end."""

    __slots__ = ("view", "offset")

    def __init__(self, view: memoryview) -> None:
        self.view = view
        self.offset = 0

    @property
    def remaining(self) -> int:
        return len(self.view) - self.offset

    def word(self) -> int:
        if self.remaining < 4:
            raise MalformedMessage("truncated", "datagram ends inside a field")
        (value,) = WORD.unpack_from(self.view, self.offset)
        self.offset += 4
        return value

    def skip(self, count: int) -> None:
        self.take(count)

    def take(self, count: int) -> memoryview:
        if count > self.remaining:
            raise MalformedMessage("truncated", f"{count} octets announced, {self.remaining} left")
        chunk = self.view[self.offset : self.offset + count]
        self.offset += count
        return chunk
