"""Sampling rates from options records (IE 34, 50, 305/306), per sampler, defaults."""

from __future__ import annotations

import json

from collector.flow_export.receiver import FlowReceiver
from collector.flow_export.sampling import SamplingTable, rate_from_options
from tests.flow_export_support import V6_FIELDS, data_set, ipfix_message, ipfix_template_set, record, v6_values


def test_rate_from_each_kind_of_option():
    assert rate_from_options({34: 100}) == 100.0
    assert rate_from_options({50: 64}) == 64.0
    assert rate_from_options({305: 1, 306: 9}) == 10.0
    assert rate_from_options({305: 2, 306: 3}) == 2.5
    assert rate_from_options({48: 1}) is None


def test_sampler_specific_rate_then_domain_then_default():
    table = SamplingTable({"192.0.2.1": 50})
    assert table.rate(("192.0.2.1", 2055, 0)) == 50 and table.rate(("192.0.2.2", 2055, 0)) == 1
    table.learn(("192.0.2.1", 2055, 0), {48: 7, 34: 10})
    table.learn(("192.0.2.1", 2055, 0), {48: 8, 34: 1000})
    assert table.rate(("192.0.2.1", 2055, 0), sampler=7) == 10
    assert table.rate(("192.0.2.1", 2055, 0)) == 1000  # the latest announced for the domain
    assert table.rate(("192.0.2.1", 2055, 1)) == 50  # another domain: the configured default
    assert table.rate(("192.0.2.1", 2056, 0)) == 50  # another port: another exporter process


def test_rates_persist(tmp_path):
    table = SamplingTable()
    table.learn(("2001:db8::1", 4739, 3), {302: 4, 305: 1, 306: 99})
    table.snapshot().write(tmp_path / "s.json")
    assert not table.changed
    again = SamplingTable()
    again.load(tmp_path / "s.json")
    assert again.rate(("2001:db8::1", 4739, 3), sampler=4) == 100


def test_rates_saved_without_the_port_are_not_read_as_anyone_s(tmp_path):
    path = tmp_path / "sampling.json"
    path.write_text(json.dumps({"domains": [["2001:db8::1", 3, 100.0]], "samplers": []}))  # the first layout
    table = SamplingTable()
    table.load(path)
    assert len(table) == 0 and table.rate(("2001:db8::1", 4739, 3)) == 1


def test_learnt_rates_are_bounded_and_the_excess_counted():
    table = SamplingTable(limit=3)
    for sampler in range(10):  # a flood of options records naming ever new samplers
        table.learn(("2001:db8::1", 4739, 0), {48: sampler, 34: 100 + sampler})
    assert len(table) == 3 and table.refused == 8  # the domain's rate and two samplers kept
    assert table.rate(("2001:db8::1", 4739, 0), sampler=1) == 101
    assert table.rate(("2001:db8::1", 4739, 0), sampler=9) == 109  # refused: the latest rate of the domain


def test_ipfix_psamp_options_scale_records_that_name_their_selector():
    receiver = FlowReceiver()
    options_fields = [(302, 4), (305, 4), (306, 4)]
    flow_fields = V6_FIELDS + [(302, 4)]
    options = data_set(300, [record(options_fields, {302: 9, 305: 1, 306: 19})])
    flows = data_set(
        256, [record(flow_fields, {**v6_values("2001:db8::1", "2001:db8::2", octets=100, packets=1), 302: 9})]
    )
    receiver.handle_datagram(
        ipfix_message(
            [
                ipfix_template_set(300, options_fields, scope_count=1),
                ipfix_template_set(256, flow_fields),
                options,
                flows,
            ]
        ),
        "2001:db8::e",
        4739,
    )
    video = receiver.counters.by_slice()["video"]
    assert (video.bytes, video.packets) == (2000, 20)
    assert receiver.state.sampling.in_use["2001:db8::e"] == 20
