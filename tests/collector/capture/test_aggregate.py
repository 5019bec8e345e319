"""Flow aggregation: the timeouts, sampling scale, slices, and add == add_batch."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import TCP, HBHOptUnknown, IPv6, IPv6ExtHdrHopByHop

from collector.capture.aggregate import FlowAggregator
from collector.traffic.classifier import SliceClassifier
from collector.wire.dissect import dissect_batch, dissect_ip

S = 1_000_000_000
FLOWS = [
    bytes(IPv6(src="fd00::1", dst="fd00::2", tc=34 << 2, fl=7) / UDP(sport=1, dport=2) / (b"v" * 100)),
    bytes(IPv6(src="fd00::1", dst="fd00::2", tc=26 << 2) / TCP(sport=3, dport=4)),
    bytes(IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=5, dport=6)),
    bytes(
        IPv6(src="fd00::3", dst="fd00::4")
        / IPv6ExtHdrHopByHop(options=[HBHOptUnknown(otype=0x1E, optdata=b"\0\0\0\3")])
        / UDP(sport=7, dport=8)
    ),
]


def feed_one_by_one(aggregator: FlowAggregator, packets: list[tuple[int, bytes]]) -> list:
    for ts, packet in packets:
        aggregator.add(ts, dissect_ip(packet))
    return aggregator.flush()


def feed_in_batches(aggregator: FlowAggregator, packets: list[tuple[int, bytes]], size: int) -> list:
    for begin in range(0, len(packets), size):
        part = packets[begin : begin + size]
        buffer = np.frombuffer(b"".join(p for _, p in part), dtype=np.uint8)
        lengths = np.array([len(p) for _, p in part], dtype=np.int64)
        offsets = np.r_[0, np.cumsum(lengths)[:-1]].astype(np.int64)
        batch = dissect_batch(buffer, offsets, lengths)
        aggregator.add_batch(np.array([ts for ts, _ in part], dtype=np.int64)[batch.kept], batch)
    return aggregator.flush()


def test_idle_timeout_starts_a_new_record() -> None:
    packets = [(0, FLOWS[0]), (1 * S, FLOWS[0]), (3 * S, FLOWS[0]), (20 * S, FLOWS[0]), (21 * S, FLOWS[0])]
    records = feed_one_by_one(FlowAggregator("x", idle_timeout_s=15), packets)
    assert [(r.packets, r.start_ns, r.end_ns) for r in records] == [(3, 0, 3 * S), (2, 20 * S, 21 * S)]
    assert records[0].bytes == 3 * (40 + 8 + 100)


def test_active_timeout_cuts_long_flows() -> None:
    packets = [(i * S, FLOWS[1]) for i in range(25)]
    records = feed_one_by_one(FlowAggregator("x", active_timeout_s=10, idle_timeout_s=5), packets)
    assert [(r.packets, r.start_ns // S, r.end_ns // S) for r in records] == [(10, 0, 9), (10, 10, 19), (5, 20, 24)]


def test_sampling_scales_packets_and_bytes_and_fields_are_kept() -> None:
    records = feed_one_by_one(FlowAggregator("capture:eth0", sampling_rate=100), [(5, FLOWS[0]), (6, FLOWS[0])])
    (record,) = records
    assert (record.packets, record.bytes, record.sampling_rate) == (200, 200 * 148, 100)
    assert (record.exporter, record.source, record.destination, record.protocol) == (
        "capture:eth0",
        "fd00::1",
        "fd00::2",
        17,
    )
    assert (record.source_port, record.destination_port, record.dscp, record.flow_label, record.slice) == (
        1,
        2,
        34,
        7,
        "video",
    )


def test_slices_from_dscp_ipv4_and_slice_id() -> None:
    classifier = SliceClassifier.from_rules(
        [
            {"slice": "data", "slice_id": 3},
            {"slice": "video", "dscp": 34},
            {"slice": "egov", "destination": "192.0.2.0/24"},
        ]
    )
    for feed in (lambda a, p: feed_one_by_one(a, p), lambda a, p: feed_in_batches(a, p, 10)):
        records = feed(FlowAggregator("x", classifier), [(i, packet) for i, packet in enumerate(FLOWS)])
        assert sorted((r.source, r.slice) for r in records) == [
            ("192.0.2.1", "egov"),
            ("fd00::1", "best-effort"),
            ("fd00::1", "video"),
            ("fd00::3", "data"),
        ]


def test_expire_ends_idle_and_old_records_only() -> None:
    aggregator = FlowAggregator("x", active_timeout_s=60, idle_timeout_s=10)
    aggregator.add(0, dissect_ip(FLOWS[0]))
    aggregator.add(8 * S, dissect_ip(FLOWS[1]))
    assert [r.source_port for r in aggregator.expire(12 * S)] == [1]
    assert len(aggregator) == 1
    assert [r.source_port for r in aggregator.flush()] == [3]


def test_max_flows_ends_the_oldest() -> None:
    aggregator = FlowAggregator("x", max_flows=2)
    for i, packet in enumerate(FLOWS[:3]):
        aggregator.add(i, dissect_ip(packet))
    assert [r.source_port for r in aggregator.drain()] == [1]
    assert len(aggregator) == 2


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="sampling rate"):
        FlowAggregator("x", sampling_rate=0)
    with pytest.raises(ValueError, match="active timeout"):
        FlowAggregator("x", active_timeout_s=0)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 8 * S)), min_size=1, max_size=80),
    st.integers(1, 30),
    st.booleans(),
)
def test_batches_give_the_records_of_one_by_one(steps, batch_size: int, sorted_times: bool) -> None:
    """Any packet order and gaps (also time going backwards), any batch size, same records."""
    times = np.cumsum([gap for _, gap in steps]) if sorted_times else [gap for _, gap in steps]
    packets = [(int(t), FLOWS[flow]) for (flow, _), t in zip(steps, times)]
    options = dict(active_timeout_s=20, idle_timeout_s=5)
    expected = feed_one_by_one(FlowAggregator("x", **options), packets)
    got = feed_in_batches(FlowAggregator("x", **options), packets, batch_size)
    assert sorted(got, key=repr) == sorted(expected, key=repr)
