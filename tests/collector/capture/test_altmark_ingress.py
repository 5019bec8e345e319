"""The ingress marker: FlowMonIDs unique per site, the option inserted exactly, colours by
the clock, D marks per block, what passes unmarked counted; and the stage in a real
namespace marking real packets that a counting point downstream reads."""

from __future__ import annotations

import subprocess
import sys

import pytest
from scapy.layers.inet import UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrHopByHop

from collector.capture.altmark import AltMark, MarkingPoint, find_altmark
from collector.capture.altmark_ingress import (
    FlowMonIds,
    IngressMarker,
    Selector,
    flow_key,
    insert_altmark,
    rule_command,
)
from collector.wire.dissect import dissect_ip
from tests.altmark_support import ADDR_B, PORT, marked_pair, send_udp
from tests.capture_support import Capture
from tests.support import wait_until

BLOCK_NS = 1_000_000_000


def udp_packet(sport: int = 4000, dport: int = PORT, payload: bytes = b"x" * 20, tclass: int = 34 << 2) -> bytes:
    return bytes(IPv6(src="2001:db8::1", dst="2001:db8::2", tc=tclass) / UDP(sport=sport, dport=dport) / payload)


def test_flow_mon_ids_carry_the_site_index_and_are_reused_last():
    ids = FlowMonIds(5, site_bits=18)  # 4 local numbers
    taken = [ids.take() for _ in range(4)]
    assert taken == [5 << 2 | n for n in range(4)]
    assert ids.take() is None
    ids.give_back(taken[1])
    assert ids.take() == taken[1]
    assert {FlowMonIds(i).take() for i in range(100)} == {i << 8 for i in range(100)}  # other sites, other IDs
    with pytest.raises(ValueError):
        FlowMonIds(1 << 12)


def test_inserted_option_leaves_a_valid_packet_with_its_transport_intact():
    original = udp_packet()
    marked = insert_altmark(original, AltMark(0xABCDE, 1, True))
    assert len(marked) == len(original) + 8
    assert find_altmark(marked) == AltMark(0xABCDE, 1, True)
    parsed = IPv6(marked)
    assert parsed.plen == len(marked) - 40 and parsed.nh == 0
    assert isinstance(parsed.payload, IPv6ExtHdrHopByHop) and parsed.payload.nh == 17
    udp = parsed[UDP]
    checksum = udp.chksum
    del udp.chksum  # scapy recomputes it over the pseudo-header: the original one is still right
    assert IPv6(bytes(parsed))[UDP].chksum == checksum
    assert bytes(udp.payload) == b"x" * 20


def test_colour_follows_the_clock_and_delay_marks_fall_inside_each_block():
    marker = IngressMarker(FlowMonIds(3), block_s=1.0, delay_marks=2)
    packet = udp_packet()
    marks = []
    for i in range(400):  # 4 blocks, a packet every 10 ms
        now = 7 * BLOCK_NS + i * 10_000_000
        mark = find_altmark(marker.mark(packet, now))
        marks.append((now // BLOCK_NS, mark))
    assert {mark.flow_mon_id for _, mark in marks} == {3 << 8}
    assert all(mark.loss_flag == block % 2 for block, mark in marks)
    per_block = {}
    for block, mark in marks:
        per_block[block] = per_block.get(block, 0) + mark.delay_flag
    assert per_block == {7: 2, 8: 2, 9: 2, 10: 2}
    assert marker.counters.marked == 400 and marker.counters.delay_marked == 8


def test_flows_get_their_own_ids_up_to_the_limit_and_idle_ones_give_theirs_back():
    marker = IngressMarker(FlowMonIds(1), max_flows=2, idle_s=1.0)
    first = find_altmark(marker.mark(udp_packet(sport=1), 0)).flow_mon_id
    second = find_altmark(marker.mark(udp_packet(sport=2), 0)).flow_mon_id
    assert first != second
    assert marker.mark(udp_packet(sport=3), 0) is None
    assert marker.counters.skipped["flow-limit"] == 1
    assert find_altmark(marker.mark(udp_packet(sport=1), 10)).flow_mon_id == first  # same flow, same ID
    later = 3 * BLOCK_NS  # both idle beyond 1 s: their IDs go back, the new flow gets a fresh one
    assert find_altmark(marker.mark(udp_packet(sport=3), later)) is not None
    assert marker.counters.flows_ended == 2 and len(marker.flows()) == 1


def test_what_cannot_be_marked_exactly_passes_unchanged_and_is_counted():
    marker = IngressMarker(FlowMonIds(1), mtu=1280)
    with_header = bytes(IPv6(src="::1", dst="::2") / IPv6ExtHdrHopByHop() / UDP() / b"x")
    assert marker.mark(with_header, 0) is None
    assert marker.mark(udp_packet(payload=b"x" * 1230), 0) is None  # 1278 + 8 > 1280
    assert marker.mark(b"\x45" + b"\x00" * 40, 0) is None
    assert marker.counters.skipped == {"extension-headers": 1, "too-big": 1, "flow-limit": 0, "not-ipv6": 1}
    assert marker.counters.marked == 0


def test_flow_key_is_addresses_protocol_and_ports():
    assert flow_key(udp_packet(sport=1)) != flow_key(udp_packet(sport=2))
    assert flow_key(udp_packet(payload=b"a")) == flow_key(udp_packet(payload=b"bb"))


def test_selector_builds_the_queue_rule_and_refuses_what_ip6tables_would():
    selector = Selector(34, ("2001:db8:100::/48",), "udp", (5004, 5005))
    assert rule_command("-A", selector, 7) == [
        "ip6tables", "-w", "-t", "mangle", "-A", "POSTROUTING",
        "-d", "2001:db8:100::/48", "-p", "udp", "-m", "multiport", "--dports", "5004,5005",
        "-m", "dscp", "--dscp", "34", "-m", "comment", "--comment", "xnetmon:altmark:7",
        "-j", "NFQUEUE", "--queue-num", "7",
    ]  # fmt: skip
    for bad in (
        {"dscp": 64},
        {"destinations": ("10.0.0.0/8",)},
        {"ports": (80,)},
        {"protocol": "sctp"},
        {"protocol": "udp", "ports": (0,)},
    ):
        with pytest.raises(ValueError):
            Selector(**bad)


@pytest.mark.root
@pytest.mark.tool("ip6tables")
def test_the_stage_marks_real_packets_leaving_the_namespace():
    """Only the selected DSCP is marked; a counting point behind the veth counts every packet."""
    point = MarkingPoint("b-in")
    with marked_pair(dscp=34) as pair:
        capture = Capture(pair.ns_b, pair.if_b, "in", point.observe)
        try:
            send_udp(pair.ns_a, ADDR_B, PORT, count=50, dscp=34)
            send_udp(pair.ns_a, ADDR_B, PORT, count=20, dscp=0)
            wait_until(lambda: sum(point.packets.values()) >= 50, what="the marked packets counted")
        finally:
            assert capture.stop() == 0
        report = pair.stop_marker()
    assert report["marked"] == 50 and report["flows_started"] == 1
    assert report["kernel_queue_dropped"] == 0 and report["verdict_errors"] == 0
    (flow_mon_id,) = point.flow_mon_ids()
    assert flow_mon_id >> 8 == pair.site_index
    assert sum(point.packets.values()) == 50  # the DSCP 0 packets were not queued


def test_the_command_refuses_bad_arguments_with_a_clear_error():
    done = subprocess.run(
        [sys.executable, "-m", "collector.capture.altmark_ingress", "--queue", "1", "--site-index", "99999"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "site index" in done.stderr


@pytest.mark.parametrize("header", ["hop-by-hop", "destination"])
@pytest.mark.parametrize("slice_id", [None, 0xC0FFEE01])
def test_the_option_in_either_header_and_the_slice_id_leave_a_valid_packet_a_point_counts(header, slice_id):
    marker = IngressMarker(FlowMonIds(3), header=header, slice_id=slice_id, mtu=1280)
    original = udp_packet()
    marked = marker.mark(original, 5 * BLOCK_NS)
    added = {("hop-by-hop", None): 8, ("destination", None): 8}.get((header, slice_id), 16)
    assert marked is not None and len(marked) == len(original) + added
    parsed = IPv6(marked)
    assert parsed.plen == len(marked) - 40
    hop_by_hop = parsed.getlayer(IPv6ExtHdrHopByHop)
    destination = parsed.getlayer(IPv6ExtHdrDestOpt)
    carrier = hop_by_hop if header == "hop-by-hop" else destination
    assert carrier is not None and next(o.otype for o in carrier.options if o.otype > 1) == 0x12
    if slice_id is None:
        assert (hop_by_hop is None) == (header == "destination")
    else:  # the slice ID rides in the Hop-by-Hop header, first in the chain
        assert parsed.nh == 0
        assert dissect_ip(marked).slice_id == slice_id
    udp = parsed[UDP]
    checksum = udp.chksum
    del udp.chksum
    assert IPv6(bytes(parsed))[UDP].chksum == checksum and bytes(udp.payload) == b"x" * 20
    point = MarkingPoint("a-b")
    point.observe(0, marked)
    assert point.packets == {(3 << 8, 1): 1}
    # the MTU counts what this configuration adds
    assert marker.mark(udp_packet(payload=bytes(1280 - 48 - added + 1)), 5 * BLOCK_NS) is None
    assert marker.mark(udp_packet(payload=bytes(1280 - 48 - added)), 5 * BLOCK_NS) is not None
