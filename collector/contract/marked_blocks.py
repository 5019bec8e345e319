"""Alternate-marking blocks as they travel from counting points to the analyzer, and how
the blocks of two points along a flow's path are paired into per-block loss and delay.

A counting point (`collector.capture.counting_point`) finalises a `Block` per FlowMonID and
colour period (`collector.capture.altmark`); the agent ships it as a `MarkedBlock`, naming
the point (its site, the link it sits on, the direction packets crossed it) and the slice of
the flow, beside its windows (`ShipmentBatch.marked_blocks`). The analyzer orders a flow's
points along its path and pairs each consecutive two with `block_loss`: the same function
the agent's own two-point segments use, so both ends count a block's loss alike.

Pairing: a downstream block goes with the upstream block of its colour whose middle is
nearest to its own, among those that overlap it within `max_delay_ns`. Same-colour blocks
are two periods apart, so this is unambiguous while the delay between points is below one
block period; packets reordered across a boundary were already counted into their block by
the point (`MarkingPoint`), so they are not loss. D-marked packets are paired by their order
within a block, and only when both points saw the same number of them.

A block a point counted while its capture socket was dropping packets (`capture_dropped`)
still pairs, so the flow's path stays known; its loss against the other point is unknown
(`BlockLoss.loss_known`), and its delay too (a D-marked packet may be among those dropped).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from collector.contract.records import Count

DIRECTIONS = ("in", "out")


class _HasBlocks(Protocol):
    def blocks(self) -> tuple[Block, ...]: ...


MAX_DELAY_MARKS = 64  # D timestamps a point keeps per block


@dataclass(frozen=True, slots=True)
class Block:
    """One block of one FlowMonID at one point."""

    flow_mon_id: int
    sequence: int  # 0 for the first block this point saw of the FlowMonID
    colour: int
    packets: Count
    first_ns: int
    last_ns: int
    delay_marks_ns: tuple[int, ...]  # capture times of the D-marked packets, in arrival order


@dataclass(frozen=True, slots=True)
class MarkedBlock:
    """One finished block of one flow at one counting point, as an agent ships it."""

    site: str  # the agent's site
    link: str  # the link the point's interface is on, named alike at both ends
    direction: str  # "out": leaving the site onto the link, "in": arriving from it
    slice: str  # the flow's slice, by its DSCP at the point
    flow_mon_id: int
    sequence: int
    colour: int
    packets: Count
    first_ns: int
    last_ns: int
    delay_marks_ns: tuple[int, ...]
    # the point's capture socket dropped packets (its kernel drop counter rose) while this block
    # passed: its count may lack packets the path delivered, so its loss against another point is unknown
    capture_dropped: bool = False

    @property
    def point(self) -> tuple[str, str, str]:
        return (self.site, self.link, self.direction)


@dataclass(frozen=True, slots=True)
class BlockLoss:
    """One block seen at both points."""

    flow_mon_id: int
    colour: int
    upstream_sequence: int
    downstream_sequence: int
    first_ns: int  # upstream's first packet of the block
    upstream_packets: int
    downstream_packets: int
    mean_delay_ns: float | None  # over the D-marked packets; None when they cannot be paired
    delay_samples: int
    loss_known: bool = True  # False: a point's capture dropped packets during the block

    @property
    def lost(self) -> int:
        """Packets lost between the points (negative if the path duplicated some)."""
        return self.upstream_packets - self.downstream_packets


PAIRING_MAX_DELAY_NS = 1_000_000_000  # blocks of two points pair only when they overlap within this


def block_loss(
    upstream: Sequence[Block] | Sequence[MarkedBlock] | _HasBlocks,
    downstream: Sequence[Block] | Sequence[MarkedBlock] | _HasBlocks,
    *,
    max_delay_ns: int = PAIRING_MAX_DELAY_NS,
) -> list[BlockLoss]:
    """Pair the final blocks of two points (block lists, or points with a `blocks()` method)
    and give each pair's loss and delay."""
    up_blocks = upstream.blocks() if hasattr(upstream, "blocks") else upstream
    down_blocks = downstream.blocks() if hasattr(downstream, "blocks") else downstream
    by_colour: dict[tuple[int, int], tuple[list[float], list]] = {}
    for block in sorted(up_blocks, key=_middle):
        middles, blocks = by_colour.setdefault((block.flow_mon_id, block.colour), ([], []))
        middles.append(_middle(block))
        blocks.append(block)
    pairs: dict[tuple[int, int], tuple] = {}
    for down in down_blocks:
        middles, blocks = by_colour.get((down.flow_mon_id, down.colour), ([], []))
        index = bisect.bisect_left(middles, _middle(down))
        candidates = [
            blocks[i]
            for i in (index - 1, index)
            if 0 <= i < len(blocks)
            and blocks[i].first_ns - max_delay_ns <= down.last_ns
            and down.first_ns <= blocks[i].last_ns + max_delay_ns
        ]
        if not candidates:
            continue
        up = min(candidates, key=lambda b: abs(_middle(b) - _middle(down)))
        key = (up.flow_mon_id, up.sequence)
        kept = pairs.get(key)
        if kept is None or abs(_middle(down) - _middle(up)) < abs(_middle(kept[1]) - _middle(up)):
            pairs[key] = (up, down)
    return [_pair(up, down) for up, down in sorted(pairs.values(), key=lambda p: (p[0].flow_mon_id, p[0].sequence))]


def _middle(block: Block | MarkedBlock) -> float:
    return (block.first_ns + block.last_ns) / 2


def _capture_dropped(block: Block | MarkedBlock) -> bool:
    return getattr(block, "capture_dropped", False)  # a point's own Block: its capture is the caller's


def _pair(up: Block | MarkedBlock, down: Block | MarkedBlock) -> BlockLoss:
    marks = len(up.delay_marks_ns)
    delay = None
    known = not (_capture_dropped(up) or _capture_dropped(down))
    if known and marks and marks == len(down.delay_marks_ns):
        delay = sum(d - u for u, d in zip(up.delay_marks_ns, down.delay_marks_ns)) / marks
    return BlockLoss(
        up.flow_mon_id,
        up.colour,
        up.sequence,
        down.sequence,
        up.first_ns,
        up.packets,
        down.packets,
        delay,
        marks if delay is not None else 0,
        known,
    )
