"""The receiver on real UDP sockets: every listen address served by one thread, one port for
every protocol, binding failures, and the state it keeps across a restart."""

from __future__ import annotations

import os
import socket

import pytest

from collector.flow_export.receiver import FlowReceiver, ReceiverSettings, ReceiverStateError
from tests.flow_export_support import (
    V6_FIELDS,
    data_set,
    ipfix_message,
    ipfix_template_set,
    record,
    sflow_datagram,
    sflow_flow_sample,
    v6_values,
    v9_packet,
    v9_template_flowset,
)
from tests.support import wait_until

ROW = record(V6_FIELDS, v6_values("2001:db8::1", "2001:db8::2", octets=1000, packets=2))
IPFIX = ipfix_message([ipfix_template_set(256, V6_FIELDS), data_set(256, [ROW])])
NETFLOW9 = v9_packet([v9_template_flowset(256, V6_FIELDS), data_set(256, [ROW])])
FRAME = bytes.fromhex(
    "02000000000202000000000186dd68812345002c114020010db800000000000000000000000120010db8000000000000000000000002"
) + bytes(44)
SFLOW = sflow_datagram([sflow_flow_sample([FRAME], rate=10)])


def send(datagram: bytes, address: tuple[str, int]) -> None:
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.sendto(datagram, address)


def datagrams_seen(receiver: FlowReceiver) -> int:
    with receiver.reading():
        return sum(receiver.datagrams.values())


def test_every_listen_address_is_served_and_exporters_are_named_by_their_address():
    with FlowReceiver(ReceiverSettings(listen=[("[::1]", 0), ("127.0.0.1", 0)])) as receiver:
        v6, v4 = receiver.addresses
        assert v6[0] == "::1" and v4[0] == "127.0.0.1" and v6[1] > 0 and v4[1] > 0
        send(IPFIX, v6)
        send(NETFLOW9, v4)
        wait_until(lambda: datagrams_seen(receiver) == 2, what="the receiver counting both datagrams")
    assert dict(receiver.datagrams) == {("::1", "ipfix"): 1, ("127.0.0.1", "netflow9"): 1}
    assert receiver.counters.by_slice()["video"].bytes == 2000
    assert receiver.addresses == []  # stopping closed the sockets


def test_one_port_takes_every_protocol_and_counts_what_is_none_of_them():
    with FlowReceiver(ReceiverSettings(listen=[("::1", 0)])) as receiver:
        [address] = receiver.addresses
        for datagram in (IPFIX, NETFLOW9, SFLOW, b"\x00\x07garbage"):
            send(datagram, address)
        wait_until(lambda: datagrams_seen(receiver) == 3 and receiver.malformed, what="the malformed datagram counted")
    assert sorted(protocol for _, protocol in receiver.datagrams) == ["ipfix", "netflow9", "sflow"]
    assert dict(receiver.malformed) == {("unknown", "version"): 1}


def test_an_address_that_cannot_be_bound_fails_the_start_and_leaves_nothing_open():
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as taken:
        taken.bind(("::1", 0))
        receiver = FlowReceiver(ReceiverSettings(listen=[("::1", 0), ("::1", taken.getsockname()[1])]))
        with pytest.raises(OSError):
            receiver.start()
    assert receiver.addresses == []


def test_learnt_sampling_and_templates_are_kept_across_a_restart(tmp_path):
    settings = ReceiverSettings(listen=[], state_dir=tmp_path)
    options_fields = [(48, 2), (34, 4)]
    first = FlowReceiver(settings)
    first.handle_datagram(
        ipfix_message(
            [
                ipfix_template_set(300, options_fields, scope_count=1),
                data_set(300, [record(options_fields, {48: 1, 34: 100})]),
                ipfix_template_set(256, V6_FIELDS),
            ]
        ),
        "2001:db8::e",
        4739,
    )
    first.stop()
    assert {p.name for p in tmp_path.iterdir()} == {"sampling.json", "templates.json", "lock"}
    second = FlowReceiver(settings)
    assert second.handle_datagram(ipfix_message([data_set(256, [ROW])]), "2001:db8::e", 4739) == 1
    assert second.counters.by_slice()["video"].bytes == 100 * 1000  # the rate learnt before the restart
    second.stop()


def test_a_second_receiver_on_a_held_state_dir_is_refused_until_the_first_stops(tmp_path):
    settings = ReceiverSettings(listen=[], state_dir=tmp_path / "state")
    first = FlowReceiver(settings)
    with pytest.raises(ReceiverStateError, match=rf"{tmp_path / 'state'} is in use by pid {os.getpid()}"):
        FlowReceiver(settings)
    first.stop()
    FlowReceiver(settings).stop()  # the hold went with the first one's stop


def test_data_whose_template_never_came_is_counted_once_it_expires():
    receiver = FlowReceiver(ReceiverSettings(listen=[], template_timeout_s=60))
    assert receiver.handle_datagram(ipfix_message([data_set(256, [ROW])]), "2001:db8::e", 4739, now=1000.0) == 0
    receiver.housekeeping(now=1030.0)
    assert not receiver.malformed  # still waiting
    receiver.housekeeping(now=1061.0)
    assert dict(receiver.malformed) == {("ipfix", "no-template"): 1}


def test_an_error_in_the_receiving_loop_is_counted_and_the_loop_goes_on():
    failures = iter([RuntimeError("a consumer's bug")])

    def consumer(flows) -> None:
        failure = next(failures, None)
        if failure is not None:
            raise failure

    with FlowReceiver(ReceiverSettings(listen=[("::1", 0)]), on_flows=consumer) as receiver:
        [address] = receiver.addresses
        send(IPFIX, address)
        wait_until(lambda: receiver.errors["receive"] == 1, what="the error counted")
        send(IPFIX, address)
        wait_until(lambda: datagrams_seen(receiver) == 2, what="the next datagram received")
        assert receiver._thread is not None and receiver._thread.is_alive()
