"""A counting point: blocks per FlowMonID with the direction and slice of the flow, taken
once each for shipping, and what fell out of the bounded history counted."""

from __future__ import annotations

from scapy.layers.inet import UDP
from scapy.layers.inet6 import IPv6

from collector.capture.altmark import AltMark
from collector.capture.altmark_ingress import insert_altmark
from collector.capture.counting_point import STAMP_TO_SOCKET_NS, CountingPoint
from collector.traffic.classifier import SliceClassifier

CLASSIFIER = SliceClassifier.from_rules([{"slice": "video", "dscp": 34}, {"slice": "egov", "dscp": 26}])
MS = 1_000_000


def marked(flow_mon_id: int, colour: int, dscp: int, delay: bool = False) -> bytes:
    packet = bytes(IPv6(src="fd00::1", dst="fd00::2", tc=dscp << 2) / UDP(sport=1, dport=2) / b"x")
    return insert_altmark(packet, AltMark(flow_mon_id, colour, delay))


def feed(point: CountingPoint, flow_mon_id: int, dscp: int, outgoing: bool, blocks: int, per_block: int = 10) -> None:
    for block in range(blocks):
        for i in range(per_block):
            ts = (block * 1000 + i * 10) * MS
            point.observe_directed(ts, marked(flow_mon_id, block % 2, dscp, i == 5), 0, outgoing)


def test_blocks_leave_once_with_their_flows_direction_and_slice():
    point = CountingPoint("a-b", CLASSIFIER)
    feed(point, 0x101, 34, outgoing=True, blocks=4)
    feed(point, 0x202, 26, outgoing=False, blocks=3)
    first = point.take_final("a")
    # a block is final once the colour flipped twice past it: 4 blocks give 2, 3 give 1
    assert [(b.flow_mon_id, b.sequence, b.direction, b.slice, b.packets) for b in first] == [
        (0x101, 0, "out", "video", 10),
        (0x101, 1, "out", "video", 10),
        (0x202, 0, "in", "egov", 10),
    ]
    assert all(b.site == "a" and b.link == "a-b" and len(b.delay_marks_ns) == 1 for b in first)
    assert point.take_final("a") == []
    point.flush()
    flushed = [(b.flow_mon_id, b.sequence) for b in point.take_final("a")]
    assert flushed == [(0x101, 2), (0x101, 3), (0x202, 1), (0x202, 2)]
    assert point.blocks_dropped == 0


def test_blocks_that_fell_out_before_shipping_are_counted():
    point = CountingPoint("a-b", CLASSIFIER, max_blocks=3)
    feed(point, 0x101, 34, outgoing=True, blocks=10)
    taken = point.take_final("a")
    assert [b.sequence for b in taken] == [5, 6, 7]  # 8 final, the 3 newest kept
    assert point.blocks_dropped == 5


def test_at_most_max_take_blocks_leave_per_call_and_the_rest_wait():
    point = CountingPoint("a-b", CLASSIFIER, max_take=2)
    feed(point, 0x101, 34, outgoing=True, blocks=6)
    assert [b.sequence for b in point.take_final("a")] == [0, 1]
    assert [b.sequence for b in point.take_final("a")] == [2, 3]
    assert point.blocks_dropped == 0


def test_packets_seen_without_a_direction_are_counted_but_not_shipped():
    point = CountingPoint("a-b", CLASSIFIER)
    for block in range(4):
        point.observe(block * 1000 * MS, marked(0x303, block % 2, 34), 0)
    assert sum(point.packets.values()) == 4
    assert point.take_final("a") == []


def test_a_flow_the_point_forgot_and_met_again_ships_from_its_new_first_block():
    point = CountingPoint("a-b", CLASSIFIER, max_flows=1)
    feed(point, 0x101, 34, outgoing=True, blocks=4)
    assert [b.sequence for b in point.take_final("a")] == [0, 1]
    feed(point, 0x202, 34, outgoing=True, blocks=1)  # evicts 0x101
    feed(point, 0x101, 34, outgoing=True, blocks=3)  # evicts 0x202; 0x101 numbers from 0 again
    assert [(b.flow_mon_id, b.sequence) for b in point.take_final("a")] == [(0x101, 0)]


def test_a_flow_gone_silent_ships_its_open_blocks_once_and_then_only_new_ones():
    """The flow's path moved away from this interface mid-block: the part it counted still leaves."""
    point = CountingPoint("a-b", CLASSIFIER, idle_s=2.0)
    feed(point, 0x101, 34, outgoing=True, blocks=4)  # blocks 0, 1 final; 2, 3 open; last packet at 3.09 s
    assert [b.sequence for b in point.take_final("a", now_ns=4000 * MS)] == [0, 1]  # silent 0.91 s
    silent = point.take_final("a", now_ns=5100 * MS)
    assert [(b.sequence, b.packets) for b in silent] == [(2, 10), (3, 10)]
    assert point.take_final("a", now_ns=6000 * MS) == []
    for i in range(25):  # the flow comes back 3 s later, past its old blocks
        point.observe_directed((8000 + i * 40) * MS, marked(0x101, (i // 10) % 2, 34), 0, True)
    assert [b.sequence for b in point.take_final("a", now_ns=9000 * MS)] == [4]
    assert point.blocks_dropped == 0


def test_blocks_whose_packets_could_have_been_among_the_captures_drops_are_flagged():
    """Blocks at i*1000 ms + 0..90 ms: drops read after a packet at 2050 ms fall in block 2,
    and in block 1's late window (to 2500 ms); drops between blocks 3 and 4 may have been
    either's last or first packets."""
    point = CountingPoint("a-b", CLASSIFIER)
    feed(point, 0x101, 34, outgoing=True, blocks=7)  # blocks 0..4 final
    point.note_drops(1400 * MS, 2060 * MS, 0)  # a reading without drops
    point.note_drops(2050 * MS, 2070 * MS, 5)
    # read up to 2070 ms: block 1 (reaching to 2500 ms, its late window) waits for a later reading
    assert [(b.sequence, b.capture_dropped) for b in point.take_final("a")] == [(0, False)]
    point.note_drops(3100 * MS, 3200 * MS, 2)
    point.note_drops(3200 * MS, 3300 * MS, 1)  # the same spell goes on
    point.note_drops(3300 * MS, 6100 * MS, 0)
    taken = point.take_final("a")
    assert [(b.sequence, b.capture_dropped) for b in taken] == [(1, True), (2, True), (3, True), (4, True)]
    assert point.capture_drops == 8


def test_a_block_clear_of_every_drop_spell_is_not_flagged():
    point = CountingPoint("a-b", CLASSIFIER)
    feed(point, 0x101, 34, outgoing=True, blocks=5)  # blocks 0..2 final
    point.note_drops(3000 * MS, 3050 * MS, 4)  # inside block 3, open still, and block 2's late window
    point.note_drops(3050 * MS, 9000 * MS, 0)
    assert [(b.sequence, b.capture_dropped) for b in point.take_final("a")] == [(0, False), (1, False), (2, True)]
    point.flush()
    assert [(b.sequence, b.capture_dropped) for b in point.take_final("a")] == [(3, True), (4, False)]


def test_drops_in_a_blocks_late_window_flag_it():
    """Block 0 (0..90 ms) takes late packets of its colour until block 1 (from 1000 ms) is half
    a block old, 1500 ms: its packets dropped at 1200-1300 ms were missing from it, and the
    analyzer must not read them as loss. Its reach used to stop where block 1 began."""
    point = CountingPoint("a-b", CLASSIFIER)
    feed(point, 0x101, 34, outgoing=True, blocks=4)  # blocks 0, 1 final
    point.note_drops(1200 * MS, 1300 * MS, 3)
    point.note_drops(1300 * MS, 4000 * MS, 0)
    assert [(b.sequence, b.capture_dropped) for b in point.take_final("a")] == [(0, True), (1, True)]


def test_drops_past_a_blocks_late_window_do_not_flag_it():
    point = CountingPoint("a-b", CLASSIFIER)
    feed(point, 0x101, 34, outgoing=True, blocks=4)
    point.note_drops(1600 * MS, 1700 * MS, 3)  # in block 1's reach only: block 0 took no packet after 1500 ms
    point.note_drops(1700 * MS, 4000 * MS, 0)
    assert [(b.sequence, b.capture_dropped) for b in point.take_final("a")] == [(0, False), (1, True)]


def test_a_block_ends_once_the_capture_found_its_socket_empty_past_half_the_next_block():
    """Each reading of the drop counter says when a receive last found the socket empty: a
    block leaves half a block after its flip, not at the next flip; a reading after a turn
    that left packets queued moves nothing."""
    point = CountingPoint("a-b", CLASSIFIER)
    feed(point, 0x101, 34, outgoing=True, blocks=2)  # block 1 began at 1000 ms
    point.note_drops(0, 1600 * MS, 0, None)  # a flooded turn: never found empty
    assert point.take_final("a") == []
    point.note_drops(0, 1600 * MS, 0, 1500 * MS)  # empty at 1.5 s: packets stamped within the margin may still come
    assert point.take_final("a") == []
    point.note_drops(1500 * MS, 1600 * MS, 0, 1500 * MS + STAMP_TO_SOCKET_NS)
    assert [(b.sequence, b.packets) for b in point.take_final("a")] == [(0, 10)]
    for i in range(10):  # block 2, colour 0 again: a block of its own
        point.observe_directed((2000 + i * 10) * MS, marked(0x101, 0, 34), 0, True)
    point.flush()
    point.note_drops(1500 * MS, 3000 * MS, 0, 3000 * MS)  # the capture's last reading, as it ends
    assert [(b.sequence, b.colour, b.packets) for b in point.take_final("a")] == [(1, 1, 10), (2, 0, 10)]
