"""Marked blocks of one flow along a path of counting points, as agents would ship them."""

from __future__ import annotations

from collector.contract.marked_blocks import MarkedBlock
from tests.analyzer_support import T0

MS = 1_000_000
# a flow from cnty1a through city1a to prov1: out of cnty1a, into and out of city1a, into prov1
PATH = (
    ("cnty1a", "city1a-cnty1a", "out"),
    ("city1a", "city1a-cnty1a", "in"),
    ("city1a", "prov1-city1a", "out"),
    ("prov1", "prov1-city1a", "in"),
)


def path_blocks(
    counts: list[list[int]], *, flow: int = 0x9001, slice_name: str = "video", hop_ms: int = 1, points=PATH
) -> list[MarkedBlock]:
    """counts[p][b]: packets of block b at point p; blocks of 1 s, each point `hop_ms` later,
    one D-marked packet per block in its middle."""
    blocks = []
    for p, (site, link, direction) in enumerate(points):
        for sequence, packets in enumerate(counts[p]):
            start = T0 + sequence * 1000 * MS + p * hop_ms * MS
            block = MarkedBlock(site, link, direction, slice_name, flow, sequence, sequence % 2, packets, start,
                                start + 990 * MS, (start + 500 * MS,))  # fmt: skip
            blocks.append(block)
    return blocks
