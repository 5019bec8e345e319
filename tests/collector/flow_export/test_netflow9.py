"""NetFlow v9 decoding: templates, uptime-based times, options templates whose scope types
are not fields, sampling from options, and bad packets."""

from __future__ import annotations

import socket

from collector.flow_export.receiver import FlowReceiver, flow_records
from collector.traffic.classifier import SliceClassifier
from tests.flow_export_support import data_set, record, v9_options_template_flowset, v9_packet, v9_template_flowset

EXPORTER = "192.0.2.9"
NOW = 1_800_000_000.0
# softflowd's IPv6 template: addresses, uptime times, counters, interfaces, direction, ports, protocol, TOS
V9_FIELDS = [
    (27, 16),
    (28, 16),
    (22, 4),
    (21, 4),
    (1, 4),
    (2, 4),
    (10, 4),
    (14, 4),
    (61, 1),
    (7, 2),
    (11, 2),
    (4, 1),
    (5, 1),
    (31, 3),
]


def values(octets: int, packets: int, tos: int, label: int = 0x54321) -> dict:
    return {
        27: socket.inet_pton(socket.AF_INET6, "2001:db8::1"),
        28: socket.inet_pton(socket.AF_INET6, "2001:db8::2"),
        22: 3_500_000,
        21: 3_599_000,
        1: octets,
        2: packets,
        61: 1,
        7: 5000,
        11: 53,
        4: 17,
        5: tos,
        31: label,
    }


def test_records_with_uptime_times_and_three_octet_flow_label():
    receiver = FlowReceiver()
    got = []
    receiver.on_flows = got.append
    packet = v9_packet(
        [
            v9_template_flowset(260, V9_FIELDS),
            data_set(260, [record(V9_FIELDS, values(900, 3, 26 << 2)), record(V9_FIELDS, values(10, 1, 0))]),
        ],
        unix_secs=1_800_000_000,
        uptime_ms=3_600_000,
    )
    assert receiver.handle_datagram(packet, EXPORTER, 2055, NOW) == 2
    egov, best = flow_records(got[0], SliceClassifier.default())
    assert (egov.slice, egov.dscp, egov.bytes, egov.packets, egov.flow_label) == ("egov", 26, 900, 3, 0x54321)
    assert (egov.direction, egov.observation_domain, egov.destination_port) == ("out", 7, 53)
    boot_ms = 1_800_000_000_000 - 3_600_000  # the wall-clock time at which uptime was zero
    assert egov.start_ns == (boot_ms + 3_500_000) * 1_000_000
    assert egov.end_ns == (boot_ms + 3_599_000) * 1_000_000
    assert best.slice == "best-effort"


def test_options_sampling_interval_scales_counts():
    receiver = FlowReceiver()
    scope, options = [(1, 4)], [(34, 4), (35, 1)]  # scope type 1 (System) must not be read as field 1
    options_data = data_set(257, [(0).to_bytes(4, "big") + (100).to_bytes(4, "big") + b"\x02"], padding=3)
    flows = data_set(260, [record(V9_FIELDS, values(500, 2, 34 << 2))])
    receiver.handle_datagram(
        v9_packet(
            [v9_options_template_flowset(257, scope, options), v9_template_flowset(260, V9_FIELDS), options_data, flows]
        ),
        EXPORTER,
        2055,
        NOW,
    )
    video = receiver.counters.by_slice()["video"]
    assert (video.bytes, video.packets) == (50_000, 200)
    assert receiver.state.sampling.in_use == {EXPORTER: 100.0}


def test_configured_default_sampling_when_exporter_reports_none():
    from collector.flow_export.receiver import ReceiverSettings

    receiver = FlowReceiver(ReceiverSettings(default_sampling={EXPORTER: 10}))
    receiver.handle_datagram(
        v9_packet([v9_template_flowset(260, V9_FIELDS), data_set(260, [record(V9_FIELDS, values(500, 2, 0))])]),
        EXPORTER,
        2055,
        NOW,
    )
    assert receiver.counters.by_slice()["best-effort"].bytes == 5000


def test_malformed_v9():
    receiver = FlowReceiver()
    good = v9_packet([v9_template_flowset(260, V9_FIELDS)])
    for bad, kind in (
        (good[:12], "truncated"),
        (good[:20] + b"\x00\x05\x00\x08" + bytes(4), "set-id"),
        (good[:22] + b"\x03\x00" + good[24:], "set-length"),
        (v9_packet([v9_template_flowset(260, [(1, 0)])]), "template"),
    ):
        receiver.handle_datagram(bad, EXPORTER, 2055, NOW)
        assert receiver.malformed[("netflow9", kind)] == 1, kind
