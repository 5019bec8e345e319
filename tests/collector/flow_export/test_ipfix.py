"""IPFIX decoding through the receiver: templates, data, IPv4 and IPv6, reduced-size and
variable-length fields, the segment list, withdrawal, data before its template, bad input."""

from __future__ import annotations

import socket

import pytest

from collector.flow_export.receiver import FlowReceiver, flow_records
from collector.traffic.classifier import SliceClassifier
from tests.flow_export_support import (
    V6_FIELDS,
    data_set,
    ipfix_message,
    ipfix_template_set,
    record,
    v6_values,
    withdrawal_set,
)

EXPORTER = "2001:db8::e"
NOW = 1_800_000_000.0


def collect(receiver: FlowReceiver):
    got = []
    receiver.on_flows = got.append
    return got


def totals(receiver: FlowReceiver) -> dict[str, tuple[int, int, int]]:
    return {name: (t.bytes, t.packets, t.flows) for name, t in receiver.counters.by_slice().items()}


def test_ipv6_records_are_decoded_and_counted_per_slice():
    receiver = FlowReceiver()
    got = collect(receiver)
    rows = [
        record(V6_FIELDS, v6_values("2001:db8::1", "2001:db8::2", dscp=34, octets=1000, packets=2)),
        record(
            V6_FIELDS,
            v6_values("2001:db8::3", "2001:db8::4", dscp=26, octets=500, packets=1, flow_label=0xABCDE, direction=1),
        ),
    ]
    message = ipfix_message([ipfix_template_set(256, V6_FIELDS), data_set(256, rows, padding=3)])
    assert receiver.handle_datagram(message, EXPORTER, 4739, NOW) == 2
    assert totals(receiver) == {"video": (1000, 2, 1), "egov": (500, 1, 1)}
    first, second = flow_records(got[0], SliceClassifier.default())
    assert (first.source, first.destination, first.protocol, first.source_port, first.destination_port) == (
        "2001:db8::1",
        "2001:db8::2",
        17,
        1000,
        2000,
    )
    assert (first.dscp, first.flow_label, first.slice, first.direction) == (34, 0x12345, "video", "in")
    assert first.start_ns == 1_800_000_000_000 * 1_000_000 and first.end_ns - first.start_ns == 500_000_000
    assert (second.flow_label, second.slice, second.direction, second.observation_domain) == (0xABCDE, "egov", "out", 1)
    assert not receiver.malformed


def test_ipv4_tos_reduced_size_and_seconds():
    fields = [(8, 4), (12, 4), (4, 1), (5, 1), (1, 4), (2, 3), (150, 4), (151, 4)]
    values = {
        8: socket.inet_aton("192.0.2.1"),
        12: socket.inet_aton("198.51.100.7"),
        4: 6,
        5: 18 << 2,
        1: 70_000,
        2: 0x010203,
        150: 1_800_000_000,
        151: 1_800_000_003,
    }
    receiver = FlowReceiver()
    got = collect(receiver)
    receiver.handle_datagram(
        ipfix_message([ipfix_template_set(300, fields), data_set(300, [record(fields, values)])]),
        "192.0.2.254",
        4739,
        NOW,
    )
    (flow,) = flow_records(got[0], SliceClassifier.default())
    assert (flow.source, flow.destination, flow.dscp, flow.slice) == ("192.0.2.1", "198.51.100.7", 18, "data")
    assert (flow.bytes, flow.packets) == (70_000, 0x010203)
    assert flow.end_ns - flow.start_ns == 3_000_000_000


def test_variable_length_segment_list_ie_497():
    fields = [(27, 16), (28, 16), (195, 1), (1, 8), (2, 8), (497, 0xFFFF)]
    segments = [socket.inet_pton(socket.AF_INET6, a) for a in ("fc00:0:3::", "fc00:0:2::", "fc00:0:1::")]
    base = {
        27: socket.inet_pton(socket.AF_INET6, "2001:db8::1"),
        28: socket.inet_pton(socket.AF_INET6, "2001:db8::2"),
        195: 34,
        1: 100,
        2: 1,
    }
    short = record(fields[:-1], base) + bytes([48]) + b"".join(segments)
    long_ = record(fields[:-1], base) + bytes([255]) + (48).to_bytes(2, "big") + b"".join(segments)
    template = ipfix_template_set(400, fields)
    receiver = FlowReceiver()
    got = collect(receiver)
    receiver.handle_datagram(ipfix_message([template, data_set(400, [short, long_])]), EXPORTER, 4739, NOW)
    records = flow_records(got[0], SliceClassifier.default())
    assert [r.segments for r in records] == [("fc00:0:3::", "fc00:0:2::", "fc00:0:1::")] * 2


def test_data_before_its_template_waits_then_is_decoded():
    receiver = FlowReceiver()
    data = ipfix_message([data_set(256, [record(V6_FIELDS, v6_values("2001:db8::1", "2001:db8::2", octets=77))])])
    assert receiver.handle_datagram(data, EXPORTER, 4739, NOW) == 0
    assert receiver.state.templates.pending == 1 and not totals(receiver)
    assert receiver.handle_datagram(ipfix_message([ipfix_template_set(256, V6_FIELDS)]), EXPORTER, 4739, NOW + 1) == 1
    assert totals(receiver) == {"video": (77, 3, 1)}
    assert receiver.state.templates.pending == 0


def test_templates_are_scoped_by_exporter_port_and_domain():
    receiver = FlowReceiver()
    receiver.handle_datagram(ipfix_message([ipfix_template_set(256, V6_FIELDS)], domain=1), EXPORTER, 4739, NOW)
    rows = [record(V6_FIELDS, v6_values("2001:db8::1", "2001:db8::2"))]
    for exporter, port, domain in ((EXPORTER, 4739, 2), (EXPORTER, 5000, 1), ("2001:db8::f", 4739, 1)):
        assert receiver.handle_datagram(ipfix_message([data_set(256, rows)], domain=domain), exporter, port, NOW) == 0
    assert receiver.handle_datagram(ipfix_message([data_set(256, rows)], domain=1), EXPORTER, 4739, NOW) == 1


def test_withdrawal_forgets_one_template_or_all():
    receiver = FlowReceiver()
    rows = [record(V6_FIELDS, v6_values("2001:db8::1", "2001:db8::2"))]
    both = [ipfix_template_set(256, V6_FIELDS), ipfix_template_set(257, V6_FIELDS)]
    receiver.handle_datagram(ipfix_message(both), EXPORTER, 4739, NOW)
    receiver.handle_datagram(ipfix_message([withdrawal_set(256)]), EXPORTER, 4739, NOW)
    assert receiver.handle_datagram(ipfix_message([data_set(256, rows)]), EXPORTER, 4739, NOW) == 0
    assert receiver.handle_datagram(ipfix_message([data_set(257, rows)]), EXPORTER, 4739, NOW) == 1
    receiver.handle_datagram(ipfix_message([withdrawal_set(2)]), EXPORTER, 4739, NOW)  # all data templates
    assert len(receiver.state.templates) == 0


def test_expired_template_is_not_used():
    receiver = FlowReceiver()
    receiver.handle_datagram(ipfix_message([ipfix_template_set(256, V6_FIELDS)]), EXPORTER, 4739, NOW)
    rows = [record(V6_FIELDS, v6_values("2001:db8::1", "2001:db8::2"))]
    late = NOW + receiver.state.templates.timeout_s + 1
    assert receiver.handle_datagram(ipfix_message([data_set(256, rows)]), EXPORTER, 4739, late) == 0


@pytest.mark.parametrize(
    "mutate, kind",
    [
        (lambda m: m[:10], "truncated"),
        (lambda m: m + b"\x00", "length"),
        (lambda m: b"\x00\x0b" + m[2:], "unknown"),
        (lambda m: m[:16] + b"\x00\x01\x00\x08" + m[20:], "set-id"),
        (lambda m: m[:18] + b"\xff\xff" + m[20:], "set-length"),
    ],
)
def test_malformed_messages_are_counted_by_kind(mutate, kind):
    receiver = FlowReceiver()
    message = ipfix_message([ipfix_template_set(256, V6_FIELDS)])
    assert receiver.handle_datagram(mutate(message), EXPORTER, 4739, NOW) == 0
    if kind == "unknown":
        assert receiver.malformed == {("unknown", "version"): 1}
    else:
        assert receiver.malformed == {("ipfix", kind): 1}


def test_template_below_256_is_malformed():
    receiver = FlowReceiver()
    receiver.handle_datagram(ipfix_message([ipfix_template_set(255, V6_FIELDS)]), EXPORTER, 4739, NOW)
    assert receiver.malformed == {("ipfix", "template"): 1}


def test_uptime_times_count_from_the_system_init_time_of_options():
    options_fields = [(143, 4), (160, 8)]  # meteringProcessId (scope), systemInitTimeMilliseconds
    flow_fields = [(27, 16), (28, 16), (22, 4), (21, 4), (1, 8), (2, 8)]
    init_ms = 1_799_999_000_000
    values = {**v6_values("2001:db8::1", "2001:db8::2"), 22: 1500, 21: 2500}
    receiver = FlowReceiver()
    got = collect(receiver)
    receiver.handle_datagram(
        ipfix_message(
            [
                ipfix_template_set(300, options_fields, scope_count=1),
                ipfix_template_set(256, flow_fields),
                data_set(300, [record(options_fields, {143: 1, 160: init_ms})]),
                data_set(256, [record(flow_fields, values)]),
            ]
        ),
        EXPORTER,
        4739,
        NOW,
    )
    (flow,) = flow_records(got[0], SliceClassifier.default())
    assert (flow.start_ns, flow.end_ns) == ((init_ms + 1500) * 1_000_000, (init_ms + 2500) * 1_000_000)
