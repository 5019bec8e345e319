"""Alternate marking: the option in scapy-built packets, block counters, loss and delay between points."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import UDP
from scapy.layers.inet6 import HBHOptUnknown, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrHopByHop, PadN

from collector.capture.altmark import (
    AltMark,
    MarkingPoint,
    SegmentLoss,
    block_loss,
    decode_altmark,
    encode_altmark,
    find_altmark,
)
from collector.capture.altmark_sender import options_header

MS = 1_000_000


def rfc9343_data(flow_mon_id: int, loss: int, delay: int) -> bytes:
    """The option data laid out bit by bit as RFC 9343 section 3 draws it."""
    bits = f"{flow_mon_id:020b}{loss:01b}{delay:01b}" + "0" * 10
    return int(bits, 2).to_bytes(4, "big")


def marked(flow_mon_id=7, loss=0, delay=0, *, where="hop-by-hop", size=20):
    option = HBHOptUnknown(otype=0x12, optdata=rfc9343_data(flow_mon_id, loss, delay))
    header = IPv6ExtHdrHopByHop if where == "hop-by-hop" else IPv6ExtHdrDestOpt
    return bytes(
        IPv6(src="2001:db8:1::1", dst="2001:db8:2::2")
        / header(options=[PadN(optdata=b"\x00\x00"), option])
        / UDP(sport=1000, dport=9)
        / (b"x" * size)
    )


@pytest.mark.parametrize("where", ["hop-by-hop", "destination"])
def test_option_is_found_in_either_header(where):
    assert find_altmark(marked(0xABCDE, 1, 1, where=where)) == AltMark(0xABCDE, 1, True)
    assert find_altmark(marked(3, 0, 0, where=where)) == AltMark(3, 0, False)


def test_unmarked_and_ipv4_packets_have_no_mark():
    assert find_altmark(bytes(IPv6() / UDP())) is None
    assert find_altmark(bytes(IPv6() / IPv6ExtHdrDestOpt() / UDP())) is None
    assert find_altmark(b"\x45" + b"\x00" * 39) is None


@given(st.integers(0, (1 << 20) - 1), st.integers(0, 1), st.booleans())
def test_encoding_matches_the_rfc_layout(flow_mon_id, loss, delay):
    mark = AltMark(flow_mon_id, loss, delay)
    assert encode_altmark(mark) == b"\x12\x04" + rfc9343_data(flow_mon_id, loss, int(delay))
    assert decode_altmark(encode_altmark(mark)[2:]) == mark


def test_reserved_bits_are_ignored_and_bad_lengths_refused():
    assert decode_altmark((7 << 12 | 0x3FF).to_bytes(4, "big")) == AltMark(7, 0, False)
    with pytest.raises(ValueError):
        decode_altmark(b"\x00\x00\x00")
    with pytest.raises(ValueError):
        encode_altmark(AltMark(1 << 20, 0, False))


def test_sender_header_is_a_valid_options_header():
    header = options_header(AltMark(42, 1, True))
    assert len(header) == 8 and header[1] == 0  # one 8-octet unit
    packet = IPv6(bytes(IPv6(nh=0) / header / UDP()))  # scapy parses our bytes
    assert packet[HBHOptUnknown].otype == 0x12 and packet[HBHOptUnknown].optdata == rfc9343_data(42, 1, 1)


def feed(point: MarkingPoint, timeline):
    """timeline: (ms, flow, colour, delay flag)"""
    for at_ms, flow, colour, delay in timeline:
        point.count(round(at_ms * MS), AltMark(flow, colour, delay))


def blocks_of(colours_and_sizes, *, start_ms=0.0, spacing_ms=1.0, flow=7, skip=frozenset(), delay_ms=0.0):
    """A timeline of consecutive blocks, one D packet in the middle of each, dropping indices in `skip`."""
    timeline, index, now = [], 0, start_ms
    for colour, size in colours_and_sizes:
        for position in range(size):
            if index not in skip:
                timeline.append((now + delay_ms, flow, colour, position == size // 2))
            index += 1
            now += spacing_ms
    return timeline


def test_colour_flips_close_blocks():
    point = MarkingPoint("a")
    feed(point, blocks_of([(0, 10), (1, 10), (0, 10), (1, 5)]))
    assert [(b.sequence, b.colour, b.packets) for b in point.blocks()] == [(0, 0, 10), (1, 1, 10)]
    point.flush()
    assert [(b.colour, b.packets) for b in point.blocks()] == [(0, 10), (1, 10), (0, 10), (1, 5)]
    assert point.packets == {(7, 0): 20, (7, 1): 15}
    first = point.blocks()[0]
    assert (first.first_ns, first.last_ns, first.delay_marks_ns) == (0, 9 * MS, (5 * MS,))


def test_packet_reordered_across_a_boundary_counts_in_its_own_block():
    timeline = blocks_of([(0, 10), (1, 10), (0, 10)])
    timeline[9], timeline[10] = (timeline[10][0] - 0.5, *timeline[10][1:]), (timeline[9][0] + 0.5, *timeline[9][1:])
    timeline.sort()
    point = MarkingPoint("b")
    feed(point, timeline)
    point.flush()
    assert [b.packets for b in point.blocks()] == [10, 10, 10]


def test_flow_mon_ids_are_counted_apart():
    point = MarkingPoint("c")
    feed(point, sorted(blocks_of([(0, 4), (1, 4)], flow=1) + blocks_of([(1, 3), (0, 3)], flow=2, start_ms=0.3)))
    point.flush()
    assert [(b.colour, b.packets) for b in point.blocks(1)] == [(0, 4), (1, 4)]
    assert [(b.colour, b.packets) for b in point.blocks(2)] == [(1, 3), (0, 3)]
    assert point.blocks(99) == ()


def test_block_loss_and_delay_between_two_points():
    layout = [(0, 20), (1, 20), (0, 20), (1, 20)]
    up, down = MarkingPoint("up"), MarkingPoint("down")
    feed(up, blocks_of(layout))
    feed(down, blocks_of(layout, skip={3, 4, 25, 71}, delay_ms=2.5))
    up.flush()
    down.flush()
    losses = block_loss(up, down)
    assert [loss.lost for loss in losses] == [2, 1, 0, 1]
    assert all(loss.mean_delay_ns == pytest.approx(2.5 * MS) and loss.delay_samples == 1 for loss in losses)


def test_lost_delay_mark_leaves_that_block_without_delay():
    layout = [(0, 10), (1, 10)]
    up, down = MarkingPoint("up"), MarkingPoint("down")
    feed(up, blocks_of(layout))
    feed(down, blocks_of(layout, skip={5}, delay_ms=1.0))  # packet 5 is block 0's D packet
    up.flush()
    down.flush()
    first, second = block_loss(up, down)
    assert (first.lost, first.mean_delay_ns, first.delay_samples) == (1, None, 0)
    assert second.mean_delay_ns == pytest.approx(1.0 * MS)


def test_blocks_are_aligned_by_time_when_a_point_starts_late():
    layout = [(0, 10), (1, 10), (0, 10), (1, 10), (0, 10)]
    up, down = MarkingPoint("up"), MarkingPoint("down")
    feed(up, blocks_of(layout))
    feed(down, [event for event in blocks_of(layout, delay_ms=0.5) if event[0] >= 15])  # joins mid-block 1
    up.flush()
    down.flush()
    pairs = [(p.upstream_sequence, p.downstream_sequence, p.lost) for p in block_loss(up, down)]
    assert pairs == [(1, 0, 5), (2, 1, 0), (3, 2, 0), (4, 3, 0)]  # the partial block shows as its missed half


def test_blocks_of_other_flows_or_too_far_apart_are_not_paired():
    up, down = MarkingPoint("up"), MarkingPoint("down")
    feed(up, blocks_of([(0, 5), (1, 5)], flow=1))
    feed(down, blocks_of([(0, 5), (1, 5)], flow=2))
    feed(down, blocks_of([(0, 5), (1, 5)], flow=1, start_ms=5000))
    up.flush()
    down.flush()
    assert block_loss(up, down, max_delay_ns=1000 * MS) == []


def test_segment_loss_reports_each_block_once():
    up, down = MarkingPoint("cnty1a"), MarkingPoint("prov1")
    segment = SegmentLoss(up, down)
    layout = [(0, 10), (1, 10), (0, 10), (1, 10)]
    feed(up, blocks_of(layout))
    feed(down, blocks_of(layout, skip={1, 2}))
    assert [p.lost for p in segment.poll()] == [2, 0]  # two blocks are final at each point
    assert segment.poll() == []
    up.flush()
    down.flush()
    assert [p.lost for p in segment.poll()] == [0, 0]
    assert (segment.name, segment.lost_packets, segment.blocks) == ("cnty1a>prov1", 2, 4)


def test_observe_counts_packets_and_malformed_options():
    point = MarkingPoint("d")
    for i in range(6):
        point.observe(i * MS, marked(5, loss=i // 3, delay=i == 1, where="destination"))
    bad = bytearray(marked(5))
    bad[40 + 7] = 3  # the option now claims 3 octets of data: not an alternate-marking option
    point.observe(7 * MS, bytes(bad))
    point.observe(8 * MS, b"\x60\x00")
    point.flush()
    assert [(b.colour, b.packets, b.delay_marks_ns) for b in point.blocks()] == [(0, 3, (MS,)), (1, 3, ())]
    assert point.malformed == 2


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=100), st.sampled_from([0, 60, 43, 17]))
def test_random_packets_never_escape_a_marking_point(tail, next_header):
    head = bytearray(marked()[:40])
    head[6] = next_header
    head[4:6] = len(tail).to_bytes(2, "big")
    point = MarkingPoint("fuzz")
    point.observe(0, bytes(head) + tail)
    point.flush()
    assert point.malformed + sum(b.packets for b in point.blocks()) <= 1


def test_blocks_keep_their_sequence_across_a_flush():
    point = MarkingPoint("e")
    feed(point, blocks_of([(0, 3), (1, 3)]))
    point.flush()
    feed(point, blocks_of([(0, 3)], start_ms=100))
    point.flush()
    assert [b.sequence for b in point.blocks()] == [0, 1, 2]


def test_evicted_flow_mon_ids_leave_the_counters():
    point = MarkingPoint("f", max_flows=2)
    for flow in (1, 2, 3):
        point.count(flow * MS, AltMark(flow, 0, False))
    assert point.flow_mon_ids() == (2, 3) and set(point.packets) == {(2, 0), (3, 0)}


def test_a_block_sent_in_a_burst_does_not_swallow_the_next_one():
    """The sender stalled and caught up: block 1 took 2 ms where block 0 took 20."""
    timeline = [(i * 2.0, 7, 0, False) for i in range(10)]
    timeline += [(20.0 + i * 0.2, 7, 1, False) for i in range(10)]
    timeline += [(22.0 + i * 2.0, 7, 0, False) for i in range(10)]
    point = MarkingPoint("g")
    feed(point, timeline)
    point.flush()
    assert [b.packets for b in point.blocks()] == [10, 10, 10]


def test_a_silent_flows_open_blocks_read_as_final_and_its_next_packet_starts_a_new_block():
    """The flow left this point mid-block (a path change): no flip ends its last two blocks."""
    point = MarkingPoint("h", idle_ns=50 * MS)
    feed(point, blocks_of([(0, 10), (1, 10), (0, 4)]))
    assert [b.packets for b in point.blocks()] == [10]
    assert point.idle_blocks(7, 23 * MS + 50 * MS) == ()  # silent exactly idle_ns: not yet
    idle = point.idle_blocks(7, 24 * MS + 50 * MS)
    assert [(b.sequence, b.colour, b.packets) for b in idle] == [(1, 1, 10), (2, 0, 4)]
    assert [b.packets for b in point.blocks()] == [10]  # still open: nothing changed
    # The flow comes back after the silence in the same colour: a new block, not block 2's tail.
    feed(point, blocks_of([(0, 3), (1, 3), (0, 1)], start_ms=200))
    assert [(b.sequence, b.packets) for b in point.blocks()] == [(0, 10), (1, 10), (2, 4), (3, 3)]
    assert MarkingPoint("i").idle_blocks(7, 10**12) == ()  # no idle time set, or no such flow


def test_a_block_ends_once_the_next_is_half_a_block_old_and_everything_before_was_counted():
    point = MarkingPoint("j")
    feed(point, blocks_of([(0, 10), (1, 6)]))  # block 1 began at 10 ms: block 0 takes late packets until 15 ms
    point.close_ended(15 * MS - 1)
    assert point.blocks() == ()
    point.close_ended(15 * MS)
    assert [(b.sequence, b.colour, b.packets) for b in point.blocks()] == [(0, 0, 10)]
    point.close_ended(10**12)  # nothing more to end: block 1 is the current one
    feed(point, [(16.0, 7, 0, False)])  # colour 0 again after the half: a new block, as without the early end
    feed(point, blocks_of([(1, 3)], start_ms=20))
    point.flush()
    assert [(b.sequence, b.colour, b.packets) for b in point.blocks()] == [(0, 0, 10), (1, 1, 6), (2, 0, 1), (3, 1, 3)]


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=2, max_value=30), min_size=1, max_size=12),
    swaps=st.lists(st.integers(min_value=0, max_value=400), max_size=20),
)
def test_ending_blocks_early_gives_the_blocks_the_second_flip_gives(sizes, swaps):
    """A live point, told after every packet that all before it was counted, ends the same
    blocks as one that waits for flips: packets reordered across boundaries included."""
    timeline = blocks_of([(i % 2, size) for i, size in enumerate(sizes)])
    for i in swaps:  # neighbours swap colours, keeping the arrival times in order
        if i + 1 < len(timeline):
            (a, *rest_a), (b, *rest_b) = timeline[i], timeline[i + 1]
            timeline[i], timeline[i + 1] = (a, *rest_b), (b, *rest_a)
    waiting, live = MarkingPoint("w"), MarkingPoint("l")
    for at_ms, flow, colour, delay in timeline:
        ts = round(at_ms * MS)
        waiting.count(ts, AltMark(flow, colour, delay))
        live.close_ended(ts)  # every packet stamped before this one's time was counted
        live.count(ts, AltMark(flow, colour, delay))
    waiting.flush()
    live.flush()
    assert live.blocks() == waiting.blocks()
