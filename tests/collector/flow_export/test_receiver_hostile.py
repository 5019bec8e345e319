"""The receiver against hostile exporters, on real UDP sockets: datagrams from outside the
allow-list, floods of spoofed exporters and templates, a spoofed exporter on another port
announcing a sampling rate, and the loopback default. Each datagram comes from a socket
bound to the source it claims (addresses of 127.0.0.0/8 are all this host's)."""

from __future__ import annotations

import ipaddress
import struct
import tracemalloc

from prometheus_client import generate_latest

from collector.agent.config import FlowsModel
from collector.flow_export.receiver import FlowReceiver, ReceiverSettings
from collector.flow_export.templates import MAX_TEMPLATE_FIELDS
from collector.outputs.prometheus.flows import flow_registry
from tests.flow_export_support import (
    V6_FIELDS,
    data_set,
    ipfix_message,
    ipfix_template_set,
    record,
    send_from,
    v6_values,
)
from tests.support import Stopwatch, free_udp_port

ROW = record(V6_FIELDS, v6_values("2001:db8::1", "2001:db8::2", octets=1000, packets=2))
IPFIX = ipfix_message([ipfix_template_set(256, V6_FIELDS), data_set(256, [ROW])])
LISTEN = [("127.0.0.1", 0)]


def many_templates(count: int, fields: int, first_id: int = 256, per_message: int = 10) -> list[bytes]:
    """`count` distinct templates of `fields` fields each, `per_message` to a message."""
    layout = [(1000 + i, 4) for i in range(fields)]
    ids = range(first_id, first_id + count)
    return [
        ipfix_message([ipfix_template_set(t, layout) for t in ids[i : i + per_message]])
        for i in range(0, count, per_message)
    ]


def test_datagrams_from_outside_the_allow_list_are_refused_counted_and_leave_nothing():
    settings = ReceiverSettings(listen=LISTEN, exporters=["127.0.0.1/32", "2001:db8::/32"])
    with FlowReceiver(settings) as receiver:
        [address] = receiver.addresses
        strangers = [((f"127.0.0.{n}", 0), IPFIX) for n in range(2, 12)]
        send_from(receiver, address, [*strangers, (("127.0.0.1", 0), IPFIX)])
        assert receiver.refusals() == {"not-allowed": 10}
        assert dict(receiver.datagrams) == {("127.0.0.1", "ipfix"): 1}
        assert receiver.state.templates.counts_by_exporter() == {"127.0.0.1": 1}
        assert receiver.counters.by_slice()["video"].bytes == 1000  # only the allowed exporter's
        assert not receiver.malformed
        scrape = generate_latest(flow_registry(receiver)).decode()
    assert 'xnet_flow_refused_total{reason="not-allowed"} 10.0' in scrape
    assert "127.0.0.2" not in scrape


def test_exporters_beyond_the_bound_are_refused_and_add_no_series():
    with FlowReceiver(ReceiverSettings(listen=LISTEN, max_exporters=3)) as receiver:
        [address] = receiver.addresses
        send_from(receiver, address, [((f"127.0.1.{n}", 0), IPFIX) for n in range(1, 11)])
        assert receiver.refusals() == {"exporter-limit": 7}
        assert {exporter for exporter, _ in receiver.datagrams} == {"127.0.1.1", "127.0.1.2", "127.0.1.3"}
        send_from(receiver, address, [(("127.0.1.2", 0), IPFIX)])  # one already admitted still is
        assert receiver.datagrams[("127.0.1.2", "ipfix")] == 2


def test_templates_beyond_the_bounds_are_refused_counted_and_memory_stays_bounded():
    """A flood of 4,000 templates of 64 fields each from 400 spoofed exporters (10 each, on
    changing source ports), and 300 more from one exporter: the cache keeps its bounds, counts
    the rest, and the memory it took stays within what the bounds allow."""
    bound, per_exporter, fields = 500, 20, 64
    settings = ReceiverSettings(
        listen=LISTEN, max_exporters=1000, max_templates=bound, max_templates_per_exporter=per_exporter
    )
    with FlowReceiver(settings) as receiver:
        [address] = receiver.addresses
        one = [(("127.0.2.1", 0), m) for m in many_templates(300, fields)]  # a new source port each time
        flood = [
            ((f"127.0.{3 + n // 200}.{1 + n % 200}", 0), message)
            for n in range(400)
            for message in many_templates(10, fields)
        ]
        tracemalloc.start()
        try:
            send_from(receiver, address, one + flood)
            grown, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        templates = receiver.state.templates
        assert templates.counts_by_exporter()["127.0.2.1"] == per_exporter
        assert len(templates) == bound
        assert receiver.refusals() == {"template-limit": 300 - per_exporter, "template-total": 4300 - bound - 280}
    # A template of 64 fields holds ~5 KiB; the 4,300 sent would take over 20 MiB unbounded.
    print(f"traced during the flood: {grown / 2**20:.2f} MiB")
    assert grown < bound * 5 * 1024 + (4 << 20), f"{grown / 2**20:.1f} MiB traced during the flood"


def test_a_template_with_more_fields_than_any_real_one_is_refused_even_as_a_replacement():
    exporter = ("127.0.0.1", free_udp_port("127.0.0.1"))
    with FlowReceiver(ReceiverSettings(listen=LISTEN)) as receiver:
        [address] = receiver.addresses
        send_from(receiver, address, [(exporter, IPFIX), (exporter, many_templates(1, MAX_TEMPLATE_FIELDS + 1)[0])])
        assert len(receiver.state.templates) == 1 and receiver.refusals() == {"template-size": 1}
        send_from(receiver, address, [(exporter, ipfix_message([data_set(256, [ROW])]))])
        assert receiver.counters.by_slice()["video"].bytes == 2000  # the template it had still decodes


def test_a_datagram_of_withdrawals_costs_what_it_withdraws_not_what_the_cache_holds():
    """16,000 "withdraw every template of this domain" records in one datagram, with 4,000
    templates of other exporters held: each must not scan them all (that took 9 CPU seconds,
    with the lock held, for this one datagram)."""
    settings = ReceiverSettings(listen=LISTEN, max_exporters=1000)
    with FlowReceiver(settings) as receiver:
        [address] = receiver.addresses
        held = [((f"127.0.4.{1 + n}", 0), m) for n in range(200) for m in many_templates(20, 4, per_message=20)]
        send_from(receiver, address, held)
        assert len(receiver.state.templates) == 4000
        withdrawals = struct.pack("!HH", 2, 4 + 4 * 16_000) + struct.pack("!HH", 2, 0) * 16_000
        stopwatch = Stopwatch()
        send_from(receiver, address, [(("127.0.5.1", 0), ipfix_message([withdrawals]))])
        took = stopwatch.seconds()
        assert len(receiver.state.templates) == 4000 and not receiver.malformed
    assert took < 1.0, f"one datagram of withdrawals took {took:.2f} s"


def test_a_spoofed_exporter_on_another_port_cannot_change_the_real_one_s_sampling_rate():
    options_fields = [(48, 2), (34, 4)]

    def options(rate: int) -> bytes:
        return ipfix_message(
            [
                ipfix_template_set(300, options_fields, scope_count=1),
                data_set(300, [record(options_fields, {48: 1, 34: rate})]),
            ]
        )

    real, spoofer = free_udp_port("127.0.0.1"), free_udp_port("127.0.0.1")
    with FlowReceiver(ReceiverSettings(listen=LISTEN)) as receiver:
        [address] = receiver.addresses
        send_from(receiver, address, [(("127.0.0.1", real), options(100)), (("127.0.0.1", real), IPFIX)])
        send_from(receiver, address, [(("127.0.0.1", spoofer), options(1))])  # same address and domain
        send_from(receiver, address, [(("127.0.0.1", real), ipfix_message([data_set(256, [ROW])]))])
        assert receiver.counters.by_slice()["video"].bytes == 2 * 100 * 1000  # both sets at the real rate


def test_the_default_listen_address_is_loopback():
    for host, _ in [*ReceiverSettings().listen, *FlowsModel().addresses]:
        assert ipaddress.ip_address(host).is_loopback
