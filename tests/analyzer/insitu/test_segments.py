"""Segments of marked flows: points ordered along the path from what they declare, loss per
link and node and end to end, delay from D packets, each block reported once, bounds."""

from __future__ import annotations

import random
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import UDP
from scapy.layers.inet6 import IPv6

from analyzer.insitu.segments import SegmentStore, chains, segment_of
from collector.capture.altmark import AltMark
from collector.capture.altmark_ingress import insert_altmark
from collector.capture.counting_point import CountingPoint
from collector.traffic.classifier import SliceClassifier
from tests.analyzer.insitu.insitu_support import MS, PATH, path_blocks
from tests.analyzer_support import T0


def test_points_chain_along_the_path_whatever_order_they_come_in():
    shuffled = list(PATH)
    random.Random(4).shuffle(shuffled)
    assert chains(shuffled) == [list(PATH)]
    assert [segment_of(a, b) for a, b in zip(PATH, PATH[1:])] == [
        ("cnty1a>city1a", "link"),
        ("city1a", "node"),
        ("city1a>prov1", "link"),
    ]


def test_a_missing_point_leaves_a_span_and_separate_pieces_stay_apart():
    without_city_out = [PATH[0], PATH[1], PATH[3]]
    assert chains(without_city_out) == [[PATH[0], PATH[1]], [PATH[3]]]
    assert segment_of(PATH[0], PATH[3]) == ("cnty1a>prov1", "span")


def test_loss_lands_on_the_segment_that_lost_and_end_to_end_sums_it():
    store = SegmentStore()
    counts = [[100, 100, 100], [100, 97, 100], [100, 97, 100], [100, 96, 99]]
    found = store.add(path_blocks(counts), T0)
    by_segment = {}
    for s in found:
        by_segment.setdefault(s.segment, []).append(s.lost)
    assert by_segment == {
        "cnty1a>city1a": [0, 3, 0],
        "city1a": [0, 0, 0],
        "city1a>prov1": [0, 1, 1],
        "cnty1a>prov1": [0, 4, 1],  # end to end
    }
    totals = store.totals()
    assert totals[("video", "cnty1a>city1a", "link")].lost == 3
    assert totals[("video", "cnty1a>prov1", "end-to-end")].lost == 5
    assert totals[("video", "city1a>prov1", "link")].packets == 297
    assert all(s.delay_ns == 1 * MS for s in found if s.kind != "end-to-end")
    assert {s.delay_ns for s in found if s.kind == "end-to-end"} == {3 * MS}


def test_each_block_is_reported_once_as_agents_ship_in_any_order():
    counts = [[50] * 6, [50] * 6, [50] * 6, [50, 49, 50, 50, 48, 50]]
    blocks = path_blocks(counts)
    random.Random(7).shuffle(blocks)
    store = SegmentStore()
    found = []
    for start in range(0, len(blocks), 5):  # a few blocks per batch, points interleaved
        found += store.add(blocks[start : start + 5], T0)
    found += store.add(blocks[:3], T0)  # a batch delivered again
    assert sorted((s.segment, s.first_ns) for s in found) == sorted(set((s.segment, s.first_ns) for s in found))
    assert store.totals()[("video", "city1a>prov1", "link")].lost == 3
    assert store.totals()[("video", "city1a>prov1", "link")].blocks == 6


def test_recent_blocks_filter_by_slice_flow_and_segment():
    store = SegmentStore()
    store.add(path_blocks([[10], [10], [10], [9]], flow=1), T0)
    store.add(path_blocks([[10], [10], [10], [10]], flow=2, slice_name="egov"), T0 + 5)
    assert {s.flow_mon_id for s in store.recent(slice_name="egov")} == {2}
    assert [s.lost for s in store.recent(flow_mon_id=1, segment="city1a>prov1")] == [1]
    assert store.recent(since_ns=T0 + 6) == []


def test_flows_and_blocks_are_bounded_and_what_is_refused_is_counted():
    store = SegmentStore(max_flows=2, max_blocks=3, max_points=2)
    for flow in range(3):
        store.add(path_blocks([[5] * 4, [5] * 4], flow=flow, points=PATH[:2]), T0)
    assert store.dropped == 3 * 2  # 4 blocks into 3 places, at 2 points, for each flow
    store.add(path_blocks([[5]], flow=2, points=PATH[2:3]), T0)  # a third point of flow 2
    assert store.dropped == 7
    assert {s.flow_mon_id for s in store.recent()} == {0, 1, 2}
    assert len(store._flows) == 2  # the least recently heard flow was forgotten


def test_points_that_do_not_chain_by_links_are_put_in_line_by_time():
    """No point where the flow enters city1a: out of cnty1a, then out of city1a and into prov1,
    joined by when they saw each block; the gap is a span from leaving cnty1a to leaving city1a."""
    points = (PATH[0], PATH[2], PATH[3])
    store = SegmentStore()
    found = store.add(path_blocks([[100, 100], [98, 100], [98, 99]], points=points), T0)
    assert sorted({(s.segment, s.kind) for s in found}) == [
        ("city1a>prov1", "link"),
        ("cnty1a>city1a", "span"),
        ("cnty1a>prov1", "end-to-end"),
    ]
    assert store.totals()[("video", "cnty1a>city1a", "span")].lost == 2
    assert store.totals()[("video", "city1a>prov1", "link")].lost == 1


def test_packets_reordered_across_a_block_boundary_make_no_phantom_loss():
    """Real counting points, one seeing a flow in order and the next with the last packets of
    every block overtaken by the first of the next: every segment block loses nothing."""
    classifier = SliceClassifier.from_rules([{"slice": "video", "dscp": 34}])
    plain = bytes(IPv6(src="fd00::1", dst="fd00::2", tc=34 << 2) / UDP(sport=1, dport=2) / b"x")
    sent = [(T0 + i * MS, insert_altmark(plain, AltMark(0x77, (i // 100) % 2, i % 100 == 50))) for i in range(1000)]
    arrived = list(sent)
    for boundary in range(100, 1000, 100):  # the block's last 3 packets overtaken by the next block's first 2
        arrived[boundary - 3 : boundary + 2] = arrived[boundary : boundary + 2] + arrived[boundary - 3 : boundary]
    upstream, downstream = CountingPoint("a-b", classifier), CountingPoint("a-b", classifier)
    for ts, packet in sent:
        upstream.observe_directed(ts, packet, 0, True)
    for ts, packet in arrived:
        downstream.observe_directed(ts + 2 * MS, packet, 0, False)
    store = SegmentStore()
    found = store.add([*upstream.take_final("a"), *downstream.take_final("b")], T0)
    assert len(found) == 8 and all(s.lost == 0 for s in found)  # 10 blocks, the last two not final yet


LOSING = (("prov2>prov1", "link"), ("cnty1a>prov1", "end-to-end"))


def test_a_path_change_inside_a_block_makes_no_phantom_loss_and_segments_follow_the_new_path():
    """Real counting points at every hop of cnty1a -> city1a -> prov1; in the middle of block 4
    the flow moves to cnty1a -> city1a -> prov2 -> prov1, where prov2>prov1 loses 3 packets.
    The agents ship as they would: every point its finished blocks each second, a point the
    flow left its open blocks once silent. Block 4 took two paths: its pieces are reported,
    not the node or the ends that would count the other path's part as lost; the points the
    flow left are set aside once silent past the store's staleness, and the new path is paired."""
    classifier = SliceClassifier.from_rules([{"slice": "video", "dscp": 34}])
    plain = bytes(IPv6(src="fd00::1", dst="fd00::2", tc=34 << 2) / UDP(sport=1, dport=2) / b"x")
    old = [
        ("cnty1a", "city1a-cnty1a"),
        ("city1a", "city1a-cnty1a"),
        ("city1a", "prov1-city1a"),
        ("prov1", "prov1-city1a"),
    ]
    new = [
        *old[:2],
        ("city1a", "prov2-city1a"),
        ("prov2", "prov2-city1a"),
        ("prov2", "prov1-prov2"),
        ("prov1", "prov1-prov2"),
    ]
    points = {key: CountingPoint(key[1], classifier, idle_s=2.0) for key in {*old, *new}}
    lost = {810, 1020, 1230}  # on prov2>prov1, after the change: blocks 8, 10, 12
    per_block, blocks, moved_at = 100, 16, 450  # 10 ms apart: 1 s blocks; the move at 4.5 s
    store, found = SegmentStore(stale_s=5.0), []
    shipped_s = 0
    for i in range(blocks * per_block):
        packet = insert_altmark(plain, AltMark(0x55, (i // per_block) % 2, i % per_block == 50))
        sent_ns = T0 + i * 10 * MS
        for hop, (site, link) in enumerate(old if i < moved_at else new):
            if hop == 5 and i in lost:
                break
            points[(site, link)].observe_directed(sent_ns + hop * MS, packet, 0, hop % 2 == 0)
        while (sent_ns - T0) // 1_000_000_000 > shipped_s:  # every second each agent ships
            shipped_s += 1
            now = T0 + shipped_s * 1_000_000_000
            found += store.add([b for (site, _), p in points.items() for b in p.take_final(site, now)], now)
    assert store.blocks_split == 1
    losing = {(s.segment, s.kind, (s.first_ns - T0) // 10**9, s.lost) for s in found if s.lost != 0}
    assert losing == {(name, kind, block, 1) for block in (8, 10, 12) for name, kind in LOSING}
    blocks_of: dict[tuple[str, str], list[int]] = {}
    for s in found:
        blocks_of.setdefault((s.segment, s.kind), []).append((s.first_ns - T0) // 10**9)
    assert max(blocks_of[("city1a>prov1", "link")]) == 4  # the old link carries blocks up to the change
    assert min(blocks_of[("city1a>prov2", "link")]) == 4 and min(blocks_of[("prov2", "node")]) == 4
    assert 4 not in blocks_of[("city1a", "node")] + blocks_of[("cnty1a>prov1", "end-to-end")]
    # the new path's whole line, once the points the flow left fell silent
    assert set(blocks_of[("city1a", "node")]) == set(range(14)) - {4}  # 14, 15 not final yet


def test_a_block_a_capture_dropped_packets_in_settles_the_path_but_its_loss_is_unknown():
    """city1a's capture dropped 30 packets of block 1 arriving: neither the link into it nor
    the node after it nor the end-to-end figure reads them as loss; the segments away from it do."""
    blocks = path_blocks([[100, 100, 100], [100, 70, 100], [100, 100, 100], [100, 98, 100]])
    blocks = [
        replace(b, capture_dropped=True) if (b.site, b.direction, b.sequence) == ("city1a", "in", 1) else b
        for b in blocks
    ]
    store = SegmentStore()
    store.add(blocks, T0)
    totals = store.totals()
    link_in = totals[("video", "cnty1a>city1a", "link")]
    assert (link_in.packets, link_in.lost, link_in.blocks, link_in.unknown_blocks) == (200, 0, 2, 1)
    assert totals[("video", "city1a", "node")].unknown_blocks == 1
    assert totals[("video", "cnty1a>prov1", "end-to-end")].unknown_blocks == 0  # its ends counted whole
    assert totals[("video", "cnty1a>prov1", "end-to-end")].lost == 2
    assert totals[("video", "city1a>prov1", "link")].lost == 2  # the loss away from the dropping point stays
    unknown = [s for s in store.recent() if not s.loss_known]
    assert {(s.segment, s.delay_ns) for s in unknown} == {("cnty1a>city1a", None), ("city1a", None)}


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    per_shipment=st.integers(1, 12),
    lost_points=st.integers(0, 3),
    hop_ms=st.integers(1, 900),
)
def test_pairing_around_the_unsettled_blocks_gives_what_pairing_whole_histories_gives(
    seed, per_shipment, lost_points, hop_ms
):
    """Agents ship a few blocks at a time, points in any order, some blocks missing at some
    points (losses, a point that has not shipped yet), points up to 0.9 s apart: the segments
    found are the same as when every point's whole history is paired each time."""
    rng = random.Random(seed)
    counts = [[1000 - rng.randrange(0, 3) * (p >= lost_points) for _ in range(40)] for p in range(len(PATH))]
    blocks = [b for b in path_blocks(counts, hop_ms=hop_ms) if rng.random() > 0.1]  # some never shipped
    order = sorted(blocks, key=lambda b: (b.sequence + rng.random() * 3, rng.random()))

    def run(store: SegmentStore) -> list:
        for start in range(0, len(order), per_shipment):
            store.add(order[start : start + per_shipment], T0 + start * MS)
        return [(s.segment, s.kind, s.first_ns, s.upstream_packets, s.downstream_packets) for s in store.recent()]

    import analyzer.insitu.segments as segments

    windowed = run(SegmentStore())
    real = segments._near_unsettled
    segments._near_unsettled = lambda flow: {point: tuple(history) for point, history in flow.blocks.items()}
    try:
        whole = run(SegmentStore())
    finally:
        segments._near_unsettled = real
    assert windowed == whole and windowed
