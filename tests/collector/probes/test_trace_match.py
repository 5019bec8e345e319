"""Matching answers to trace probes, with replies crafted by scapy as routers would send them."""

from __future__ import annotations

from scapy.layers.inet import TCP, UDP
from scapy.layers.inet6 import ICMPv6DestUnreach, ICMPv6EchoReply, ICMPv6EchoRequest, ICMPv6TimeExceeded, IPv6

from collector.contract.records import FlowId, HopAnswer
from collector.probes.trace_match import FlowSet, classify, match_icmp6, match_tcp, match_udp_error
from collector.probes.trace_session import Answer
from collector.system.measurement_sockets import IcmpError
from collector.wire import trace6

ME, TARGET, ROUTER = "2001:db8::10", "2001:db8:9::1", "2001:db8:5::1"
ICMP_FLOWS = FlowSet(TARGET, (FlowId("icmp", 0x111, 0x4242), FlowId("icmp", 0x222, 0x4343)))
TCP_BASE = 0xFFFFFFF0  # near the wrap, so the arithmetic is tested too
TCP_FLOWS = FlowSet(TARGET, (FlowId("tcp", 0x111, 41000, 80),), tcp_base=TCP_BASE)


def trace_answer(flow, seq, responder, when, answer, detail=None, dscp=None) -> Answer:
    return Answer(flow, seq, responder, when, answer, detail, dscp)


def echo_probe(ident: int, seq: int, dst: str = TARGET, tc: int = 0) -> IPv6:
    return IPv6(src=ME, dst=dst, tc=tc, hlim=1) / ICMPv6EchoRequest(id=ident, seq=seq, data=trace6.echo_payload(seq))


def error(kind, probe) -> bytes:
    """An ICMPv6 error quoting `probe`, as a raw ICMPv6 socket delivers it (no IPv6 header)."""
    return bytes(IPv6(src=ROUTER, dst=ME) / kind / probe)[40:]


def test_icmp_errors_mean_what_traceroute_says():
    assert classify(3, 0) == (HopAnswer.TIME_EXCEEDED, None)
    assert classify(1, 4) == (HopAnswer.REACHED, None)
    assert classify(1, 0) == (HopAnswer.UNREACHABLE, "no route to destination")
    assert classify(1, 1) == (HopAnswer.UNREACHABLE, "administratively prohibited")
    assert classify(2, 0)[0] is HopAnswer.UNREACHABLE


def test_udp_errors_from_the_error_queue_give_the_probe_and_the_router():
    te = IcmpError(trace6.udp_payload(17), 3, 0, ROUTER, True, kernel_ns=123)
    assert match_udp_error(te, 2, 999) == trace_answer(2, 17, ROUTER, 123, HopAnswer.TIME_EXCEEDED)
    unreachable = IcmpError(trace6.udp_payload(18), 1, 4, TARGET, True)
    answer = match_udp_error(unreachable, 0, 999)
    assert answer is not None and answer.answer is HopAnswer.REACHED and answer.receive_ns == 999
    assert match_udp_error(IcmpError(b"ZZ\0\1", 3, 0, ROUTER, True), 0, 1) is None  # not our payload
    assert match_udp_error(IcmpError(trace6.udp_payload(1), 3, 0, None, True), 0, 1) is None


def test_time_exceeded_quoting_our_echo_names_flow_probe_and_dscp_at_the_router():
    data = error(ICMPv6TimeExceeded(), echo_probe(0x4343, 5, tc=26 << 2))
    answer = match_icmp6(data, ROUTER, 1000, ICMP_FLOWS, "icmp")
    assert answer == trace_answer(1, 5, ROUTER, 1000, HopAnswer.TIME_EXCEEDED, None, 26)


def test_echo_reply_from_the_target_reaches_it():
    data = bytes(ICMPv6EchoReply(id=0x4242, seq=9, data=trace6.echo_payload(9)))
    assert match_icmp6(data, TARGET, 5, ICMP_FLOWS, "icmp") == trace_answer(0, 9, TARGET, 5, HopAnswer.REACHED)


def test_foreign_icmp_is_ignored():
    other_id = bytes(ICMPv6EchoReply(id=0x9999, seq=9))
    assert match_icmp6(other_id, TARGET, 5, ICMP_FLOWS, "icmp") is None
    assert match_icmp6(bytes(ICMPv6EchoReply(id=0x4242, seq=9)), ROUTER, 5, ICMP_FLOWS, "icmp") is None
    elsewhere = error(ICMPv6TimeExceeded(), echo_probe(0x4242, 1, dst="2001:db8:7::7"))
    assert match_icmp6(elsewhere, ROUTER, 5, ICMP_FLOWS, "icmp") is None
    udp_quote = error(ICMPv6TimeExceeded(), IPv6(src=ME, dst=TARGET) / UDP(sport=0x4242, dport=33434))
    assert match_icmp6(udp_quote, ROUTER, 5, ICMP_FLOWS, "icmp") is None
    assert match_icmp6(bytes(ICMPv6EchoReply(id=0x4242, seq=1)), TARGET, 5, ICMP_FLOWS, "tcp") is None
    assert match_icmp6(b"", ROUTER, 5, ICMP_FLOWS, "icmp") is None
    assert match_icmp6(error(ICMPv6TimeExceeded(), b"")[:20], ROUTER, 5, ICMP_FLOWS, "icmp") is None


def test_errors_quoting_our_syn_match_by_ports_and_sequence_number():
    syn = IPv6(src=ME, dst=TARGET, tc=34 << 2) / TCP(sport=41000, dport=80, seq=(TCP_BASE + 20) & 0xFFFFFFFF, flags="S")
    answer = match_icmp6(error(ICMPv6TimeExceeded(), syn), ROUTER, 7, TCP_FLOWS, "tcp")
    assert answer == trace_answer(0, 20, ROUTER, 7, HopAnswer.TIME_EXCEEDED, None, 34)
    refused = match_icmp6(error(ICMPv6DestUnreach(code=1), syn), ROUTER, 7, TCP_FLOWS, "tcp")
    assert refused.answer is HopAnswer.UNREACHABLE and refused.detail == "administratively prohibited"
    other_port = IPv6(src=ME, dst=TARGET) / TCP(sport=41001, dport=80, seq=TCP_BASE, flags="S")
    assert match_icmp6(error(ICMPv6TimeExceeded(), other_port), ROUTER, 7, TCP_FLOWS, "tcp") is None


def test_syn_ack_and_rst_from_the_target_reach_it():
    ack = (TCP_BASE + 3 + 1) & 0xFFFFFFFF
    open_port = bytes(TCP(sport=80, dport=41000, seq=1, ack=ack, flags="SA"))
    closed = bytes(TCP(sport=80, dport=41000, seq=0, ack=ack, flags="RA"))
    assert match_tcp(open_port, TARGET, 1, TCP_FLOWS) == trace_answer(0, 3, TARGET, 1, HopAnswer.REACHED, "port open")
    assert match_tcp(closed, TARGET, 1, TCP_FLOWS).detail == "port closed"


def test_other_tcp_segments_are_ignored():
    ack = (TCP_BASE + 1) & 0xFFFFFFFF
    assert match_tcp(bytes(TCP(sport=80, dport=41000, ack=ack, flags="R")), TARGET, 1, TCP_FLOWS) is None
    assert match_tcp(bytes(TCP(sport=80, dport=41000, ack=ack, flags="A")), TARGET, 1, TCP_FLOWS) is None
    assert match_tcp(bytes(TCP(sport=81, dport=41000, ack=ack, flags="SA")), TARGET, 1, TCP_FLOWS) is None
    assert match_tcp(bytes(TCP(sport=80, dport=41000, ack=ack, flags="SA")), ROUTER, 1, TCP_FLOWS) is None
    far = (TCP_BASE + 0x20000) & 0xFFFFFFFF  # not one of our probes' numbers
    assert match_tcp(bytes(TCP(sport=80, dport=41000, ack=far, flags="SA")), TARGET, 1, TCP_FLOWS) is None


def test_flow_set_normalises_the_target_spelling():
    flows = FlowSet("2001:DB8:9:0::1", ICMP_FLOWS.flows)
    data = bytes(ICMPv6EchoReply(id=0x4242, seq=1))
    assert match_icmp6(data, TARGET, 5, flows, "icmp") is not None
