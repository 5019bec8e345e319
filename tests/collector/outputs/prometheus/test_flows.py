"""The flow receiver's metrics rendered from a receiver fed real export datagrams, read back
with prometheus_client's exposition parser and linted by `promtool check metrics`."""

from __future__ import annotations

import subprocess

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from collector.flow_export.receiver import FlowReceiver, ReceiverSettings
from collector.outputs.prometheus.flows import FlowFigures, flow_families, flow_registry
from collector.system.http_limits import RESPONSES_CUT_OFF
from collector.traffic.counters import TrafficTotals
from tests.flow_export_support import (
    V6_FIELDS,
    data_set,
    ipfix_message,
    ipfix_template_set,
    record,
    v6_values,
    v9_packet,
    v9_template_flowset,
)

SAMPLED, UNSAMPLED = "2001:db8::e", "192.0.2.7"
NOW = 1_800_000_000.0


def fed_receiver() -> FlowReceiver:
    """IPFIX 1-in-10 from one exporter, NetFlow v9 unsampled from another, and two bad datagrams."""
    receiver = FlowReceiver(ReceiverSettings(default_sampling={SAMPLED: 10}))
    rows = [
        record(V6_FIELDS, v6_values("2001:db8::1", "2001:db8::2", dscp=34, octets=1000, packets=2)),
        record(V6_FIELDS, v6_values("2001:db8::3", "2001:db8::4", dscp=26, octets=500, packets=1, direction=1)),
    ]
    assert (
        receiver.handle_datagram(
            ipfix_message([ipfix_template_set(256, V6_FIELDS), data_set(256, rows)]), SAMPLED, 4739, NOW
        )
        == 2
    )
    assert (
        receiver.handle_datagram(
            v9_packet([v9_template_flowset(260, V6_FIELDS), data_set(260, rows[:1])]), UNSAMPLED, 2055, NOW
        )
        == 1
    )
    receiver.handle_datagram(b"\x00\x0a\x00", UNSAMPLED, 2055, NOW)  # an IPFIX header cut short
    receiver.handle_datagram(b"\x00\x33\x00\x00", UNSAMPLED, 2055, NOW)  # no protocol we know
    return receiver


def scrape(receiver: FlowReceiver) -> str:
    return generate_latest(flow_registry(receiver)).decode()


def samples(text: str) -> dict[str, dict[tuple, float]]:
    """Family name -> {sorted label items: value}, as Prometheus would read the text."""
    return {
        family.name: {tuple(sorted(s.labels.items())): s.value for s in family.samples}
        for family in text_string_to_metric_families(text)
    }


def test_traffic_counters_are_scaled_by_sampling_per_slice_exporter_and_direction():
    got = samples(scrape(fed_receiver()))
    assert got["xnet_flow_bytes"] == {
        (("direction", "in"), ("exporter", SAMPLED), ("slice", "video")): 10_000.0,
        (("direction", "out"), ("exporter", SAMPLED), ("slice", "egov")): 5_000.0,
        (("direction", "in"), ("exporter", UNSAMPLED), ("slice", "video")): 1_000.0,
    }
    assert got["xnet_flow_packets"][(("direction", "in"), ("exporter", SAMPLED), ("slice", "video"))] == 20.0
    assert set(got["xnet_flow_records"].values()) == {1.0}  # records are not scaled


def test_exporter_gauges_datagrams_and_malformed_packets():
    got = samples(scrape(fed_receiver()))
    assert got["xnet_flow_sampling_rate"] == {(("exporter", SAMPLED),): 10.0, (("exporter", UNSAMPLED),): 1.0}
    assert got["xnet_flow_templates"] == {(("exporter", SAMPLED),): 1.0, (("exporter", UNSAMPLED),): 1.0}
    assert got["xnet_flow_datagrams"] == {
        (("exporter", SAMPLED), ("protocol", "ipfix")): 1.0,
        (("exporter", UNSAMPLED), ("protocol", "ipfix")): 1.0,
        (("exporter", UNSAMPLED), ("protocol", "netflow9")): 1.0,
    }
    assert got["xnet_malformed_packets"] == {
        (("kind", "truncated"), ("protocol", "ipfix")): 1.0,
        (("kind", "version"), ("protocol", "unknown")): 1.0,
    }


def test_family_types_are_counters_and_gauges_as_named():
    types = {f.name: f.type for f in text_string_to_metric_families(scrape(fed_receiver()))}
    assert types == {
        "xnet_flow_bytes": "counter",
        "xnet_flow_packets": "counter",
        "xnet_flow_records": "counter",
        "xnet_flow_sampling_rate": "gauge",
        "xnet_flow_templates": "gauge",
        "xnet_flow_datagrams": "counter",
        "xnet_flow_refused": "counter",
        "xnet_flow_receiver_errors": "counter",
        "xnet_malformed_packets": "counter",
        "xnet_collector_http_responses_cut_off": "counter",
    }


def test_each_scrape_reads_the_counters_as_they_are_now():
    receiver = fed_receiver()
    registry = flow_registry(receiver)
    before = samples(generate_latest(registry).decode())["xnet_flow_datagrams"]
    receiver.handle_datagram(
        v9_packet([data_set(260, [record(V6_FIELDS, v6_values("::1", "::2"))])]), UNSAMPLED, 2055, NOW
    )
    after = samples(generate_latest(registry).decode())["xnet_flow_datagrams"]
    key = (("exporter", UNSAMPLED), ("protocol", "netflow9"))
    assert (before[key], after[key]) == (1.0, 2.0)


def test_responses_the_process_cut_off_are_shown_as_they_are_now():
    """`xnetmon flows collect --metrics-listen` showed no count of them, the agent did."""
    registry = flow_registry(fed_receiver())
    before = samples(generate_latest(registry).decode())["xnet_collector_http_responses_cut_off"][()]
    assert before == RESPONSES_CUT_OFF.total
    RESPONSES_CUT_OFF.add()  # as a server of this process does when it cuts a slow reader off
    after = samples(generate_latest(registry).decode())["xnet_collector_http_responses_cut_off"][()]
    assert after == before + 1


def test_figures_without_traffic_render_every_family_with_no_series():
    families = list(flow_families(FlowFigures(totals={}, sampling_rates={})))
    assert [f.name for f in families] == [
        "xnet_flow_bytes",
        "xnet_flow_packets",
        "xnet_flow_records",
        "xnet_flow_sampling_rate",
        "xnet_flow_templates",
        "xnet_flow_datagrams",
        "xnet_flow_refused",
        "xnet_flow_receiver_errors",
    ]
    assert all(f.samples == [] for f in families)
    [bytes_family, *_] = flow_families(
        FlowFigures({("data", "x", "in"): TrafficTotals(packets=1, bytes=64, flows=1)}, {})
    )
    assert [(s.labels, s.value) for s in bytes_family.samples] == [
        ({"slice": "data", "exporter": "x", "direction": "in"}, 64)
    ]


@pytest.mark.tool("promtool")
def test_promtool_finds_nothing_to_lint_in_a_scrape():
    done = subprocess.run(
        ["promtool", "check", "metrics"], input=scrape(fed_receiver()), capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
