"""Marked blocks on the wire (round trip, every bound refused by field) and the pairing of two
points' blocks that both the agent's segments and the analyzer's use."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from collector.contract.codec import MalformedShipment, ShipmentParser, encode_body, marked_block, record_dict
from collector.contract.marked_blocks import MarkedBlock, block_loss
from tests.analyzer_support import T0, batch, window

MS = 1_000_000


def block(site: str, direction: str, sequence: int, packets: int, *, start_ms: int = 0, marks=(), link="a-b"):
    start = T0 + (start_ms + sequence * 1000) * MS
    return MarkedBlock(
        site, link, direction, "video", 0x9001, sequence, sequence % 2, packets, start, start + 990 * MS, tuple(marks)
    )


def test_marked_blocks_ride_in_the_first_body_and_come_back_equal():
    blocks = (block("a", "out", 0, 100, marks=(T0 + 500 * MS,)), block("b", "in", 0, 99, start_ms=1))
    original = replace(batch(window(T0)), marked_blocks=blocks)
    body = json.loads(encode_body(original))
    assert body["marked_blocks"][0]["delay_marks_ns"] == [T0 + 500 * MS]
    assert ShipmentParser().from_dict(body) == original


def test_a_body_without_marked_blocks_is_read_as_none():
    body = json.loads(encode_body(batch(window(T0))))
    del body["marked_blocks"]
    assert ShipmentParser().from_dict(body).marked_blocks == ()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("direction", "sideways"),
        ("colour", 2),
        ("flow_mon_id", 1 << 20),
        ("packets", -1),
        ("packets", 2**33),
        ("site", "x" * 300),
        ("delay_marks_ns", list(range(65))),
        ("delay_marks_ns", ["soon"]),
        ("last_ns", 0),
        ("capture_dropped", 1),
        ("capture_dropped", "yes"),
    ],
)
def test_a_bad_marked_block_is_refused_naming_its_field(field, value):
    data = record_dict(block("a", "out", 0, 10))
    data[field] = value
    with pytest.raises(MalformedShipment) as refused:
        marked_block(data, "marked_blocks[0]")
    assert refused.value.field == f"marked_blocks[0].{field}"


def test_the_capture_drop_flag_rides_the_wire_and_an_older_agent_without_it_sends_none():
    flagged = replace(block("b", "in", 0, 90), capture_dropped=True)
    original = replace(batch(window(T0)), marked_blocks=(flagged,))
    body = json.loads(encode_body(original))
    assert body["marked_blocks"][0]["capture_dropped"] is True
    assert ShipmentParser().from_dict(body) == original
    body = json.loads(encode_body(original))
    del body["marked_blocks"][0]["capture_dropped"]
    assert ShipmentParser().from_dict(body).marked_blocks[0].capture_dropped is False


def test_too_many_marked_blocks_are_refused_whole():
    body = json.loads(encode_body(batch(window(T0))))
    body["marked_blocks"] = [record_dict(block("a", "out", 0, 1))] * 10_001
    with pytest.raises(MalformedShipment, match="marked_blocks"):
        ShipmentParser().from_dict(body)


def test_shipped_blocks_pair_by_colour_and_time_into_loss_and_delay():
    up = [block("a", "out", s, 100, marks=(T0 + (s * 1000 + 500) * MS,)) for s in range(4)]
    down = [block("b", "in", s, 100 - s, start_ms=2, marks=(T0 + (s * 1000 + 502) * MS,)) for s in range(4)]
    pairs = block_loss(up, down)
    assert [(p.upstream_sequence, p.lost) for p in pairs] == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert all(p.mean_delay_ns == 2 * MS for p in pairs)


def test_a_block_counted_while_either_capture_dropped_pairs_but_its_loss_and_delay_are_unknown():
    up = [block("a", "out", s, 100, marks=(T0 + (s * 1000 + 500) * MS,)) for s in range(3)]
    down = [block("b", "in", s, 100, start_ms=2, marks=(T0 + (s * 1000 + 502) * MS,)) for s in range(3)]
    down[1] = replace(down[1], packets=60, delay_marks_ns=(), capture_dropped=True)
    up[2] = replace(up[2], capture_dropped=True)
    pairs = block_loss(up, down)
    assert [(p.upstream_sequence, p.downstream_sequence) for p in pairs] == [(0, 0), (1, 1), (2, 2)]
    assert [p.loss_known for p in pairs] == [True, False, False]
    assert [p.mean_delay_ns for p in pairs] == [2 * MS, None, None]
