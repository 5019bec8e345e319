"""Root-cause diagnoses from in-situ segments: a segment that loses marked packets names its
link (or the node between two segments) directly, without tomography's ambiguity.

Over the segment blocks the analyzer paired in the last `lookback_ns`, every link, span or
node segment that lost more than a healthy link would, in all its blocks, in one block or in
one flow's newest blocks together (`lately_losing`), becomes one
diagnosis (more than `NOISE_FLOOR` of its packets by three standard deviations: every link loses a little, and a
national extranet with thousands of marked flows would otherwise name every link that
dropped one packet; the floor is half the smallest gray loss the hints must find, five
times a healthy link's): kind `link-loss` for a link (its
directed name `a>b`, the name hints give links) or a span between points with sites
between them (`a>c`: the loss is somewhere on it), `node-loss` for a node; the slices its
flows belong to; confidence 0.95 (counted, not inferred: a counting point's own misses, which
its kernel-drop counter shows, leave their blocks out); and evidence that says
it rests on in-situ flow telemetry, with the numbers.
"""

from __future__ import annotations

import math

from analyzer.insitu.segments import SegmentBlock, SegmentStore
from analyzer.rootcause.model import Diagnosis

CONFIDENCE = 0.95
EVIDENCE_SOURCE = "in-situ flow telemetry (alternate marking, RFC 9341)"
NOISE_FLOOR = 0.0005  # loss ratio a healthy link stays under (0.05%)


MIN_LOST = 2  # one lost packet names nothing: thousands of small flows would each show one


def significant(lost: int, packets: int) -> bool:
    """Whether `lost` of `packets` is more than a link losing `NOISE_FLOOR` would lose, by
    three standard deviations (the count is nearly Poisson at such small ratios), and at
    least `MIN_LOST` (below ~180 packets the deviations allow one)."""
    expected = NOISE_FLOOR * packets
    return lost >= MIN_LOST and lost > expected + 3 * math.sqrt(expected)


def lately_losing(blocks: list[SegmentBlock]) -> bool:
    """Whether one flow's newest blocks on a segment, taken together back from its newest
    (one, two, ...), or any one block, lost significantly: a fault that began lately is not
    diluted by the clean blocks before it, nor must one block show it alone (a 0.5% loss
    loses fewer than three of a thousand packets in one block in one case of eight). Longer
    runs are held to the same floor over more packets, so they add almost no false alarm."""
    by_flow: dict[int, list[SegmentBlock]] = {}
    for block in blocks:
        if significant(block.lost, block.upstream_packets):
            return True
        by_flow.setdefault(block.flow_mon_id, []).append(block)
    for flow_blocks in by_flow.values():
        lost = packets = 0
        for block in sorted(flow_blocks, key=lambda b: b.first_ns, reverse=True):
            lost += max(block.lost, 0)
            packets += block.upstream_packets
            if significant(lost, packets):
                return True
    return False


def segment_diagnoses(store: SegmentStore, now_ns: int, lookback_ns: int) -> list[Diagnosis]:
    losing: dict[tuple[str, str], list[SegmentBlock]] = {}
    for segment in store.recent(since_ns=now_ns - lookback_ns):
        if segment.kind != "end-to-end" and segment.loss_known:
            losing.setdefault((segment.segment, segment.kind), []).append(segment)
    diagnoses = []
    for (name, kind), blocks in sorted(losing.items()):
        lost = sum(max(b.lost, 0) for b in blocks)
        packets = sum(b.upstream_packets for b in blocks)
        if not (significant(lost, packets) or lately_losing(blocks)):
            continue
        slices = tuple(sorted({b.slice for b in blocks}))
        flows = len({b.flow_mon_id for b in blocks})
        where = {"link": "on link", "span": "between counting points on", "node": "inside node"}[kind]
        diagnoses.append(
            Diagnosis(
                "node-loss" if kind == "node" else "link-loss",
                (name,),
                slices,
                CONFIDENCE,
                (
                    f"{lost} of {packets} marked packets lost {where} {name} ({lost / packets:.2%}), "
                    f"slice {', '.join(slices)}, {flows} flow(s), {len(blocks)} block(s): "
                    f"evidence from {EVIDENCE_SOURCE}, "
                    f"counted between points {blocks[0].upstream} and {blocks[0].downstream}",
                ),
            )
        )
    return diagnoses
