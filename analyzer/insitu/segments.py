"""In-situ flow telemetry in the analyzer: the counting points of each marked flow put in
order along its path, and loss and delay per segment between consecutive points, block by block.

Agents ship the blocks their counting points finished (`collector.contract.marked_blocks`);
`SegmentStore.add` keeps them per FlowMonID and point and pairs what can be paired.

Order of the points (from the declared topology the points themselves carry: each names the
link its interface is on, the same name at both ends, and the direction packets crossed it):
a point where the flow leaves site A onto link L is followed by the point where it arrives
from L at the other site B; a point where it arrives at B is followed by the one where it
leaves B onto another link. Between the two ends of a link the segment is the link (`A>B`,
kind `link`); between arriving at and leaving B it is the node (`B`, kind `node`); the first
point to the last is the flow's end-to-end figure (kind `end-to-end`). Where a site on the
path counts only one way (or not at all), the pieces that chain are put in line by when they
saw the same blocks (`join_by_time`) and the gap between two pieces is a span (`A>C`, kind
`span`, or `A>B` when it runs from leaving A to leaving B: a link and the node behind it).

Path per block: the points that counted a block (its blocks paired with each other) are the
block's path, settled once every other point of the flow is known to have missed it (it
counted the blocks on either side, began later, or fell silent for `stale_s`: the flow moved
away from it). So when a flow's path changes, the blocks after the change are paired along
the new path, never across the two; and the block the change fell in, counted partly on
each path (two points of one site counting it the same way), gives only the pieces that
chain by declared links (each counted the same part), not the node or the ends, which would
count the other path's part as lost (`blocks_split`). The points a flow left ship that
block once the flow is silent there (`collector.capture.counting_point`).

Per segment and block: upstream packets - downstream packets is the loss (reordering was
already absorbed by the points, `collector.capture.altmark`); the D-marked packets' times
give the one-way delay, exact in the lab where every point reads one host clock, elsewhere
off by the two agents' clock errors added. Each pair is reported once, into the totals per
(slice, segment, kind) that /metrics exposes and into a bounded list of recent blocks that
`GET /segments` and root-cause inference read.

A block a counting point counted while its capture socket dropped packets
(`MarkedBlock.capture_dropped`) still settles the path, but on the segments it ends its loss
and delay are unknown: listed with `loss_known` false, counted apart (`unknown_blocks`), never
added to a segment's loss nor read by root-cause inference.

Bounds: `max_flows` FlowMonIDs (the least recently heard forgotten first), `max_points`
points per flow, `max_blocks` blocks per flow and point, `max_recent` recent segment blocks;
blocks refused for a bound are counted in `dropped`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass

from collector.contract.marked_blocks import PAIRING_MAX_DELAY_NS, MarkedBlock, block_loss

Point = tuple[str, str, str]  # (site, link, direction)
KINDS = ("link", "node", "span", "end-to-end")


@dataclass(frozen=True, slots=True)
class SegmentBlock:
    """One block of one flow between two consecutive counting points (or its two ends)."""

    slice: str
    flow_mon_id: int
    segment: str  # "a>b" (link, span, end-to-end) or "b" (node)
    kind: str  # one of KINDS
    upstream: str  # the points, "site/link/direction"
    downstream: str
    first_ns: int  # upstream's first packet of the block
    upstream_packets: int
    downstream_packets: int
    delay_ns: float | None  # mean one-way delay of the D-marked packets; None: not pairable
    delay_samples: int
    seen_ns: int  # when the analyzer paired it
    loss_known: bool = True  # False: a point's capture dropped packets during the block

    @property
    def lost(self) -> int:
        return self.upstream_packets - self.downstream_packets


@dataclass(slots=True)
class SegmentTotals:
    """A counter per (slice, segment, kind), summed over flows and blocks."""

    packets: int = 0  # upstream packets of paired blocks
    lost: int = 0  # packets lost (blocks with more downstream add nothing...)
    duplicated: int = 0  # (...and count here)
    blocks: int = 0
    last_delay_ns: float | None = None
    unknown_blocks: int = 0  # paired, but a point's capture dropped packets: loss unknown, not counted above


def point_name(point: Point) -> str:
    return "/".join(point)


def successor(point: Point, points: Iterable[Point]) -> Point | None:
    """The next counting point of a flow after `point`, when exactly one fits."""
    site, link, direction = point
    if direction == "out":
        fits = [p for p in points if p[1] == link and p[2] == "in" and p[0] != site]
    else:
        fits = [p for p in points if p[0] == site and p[2] == "out" and p[1] != link]
    return fits[0] if len(fits) == 1 else None


def chains(points: Iterable[Point]) -> list[list[Point]]:
    """The flow's points in path order, one list per piece that chains by declared links."""
    remaining = set(points)
    following = {p: successor(p, remaining) for p in remaining}
    followed = {q for q in following.values() if q is not None}
    pieces = []
    for start in sorted(p for p in remaining if p not in followed):
        piece, point = [start], following[start]
        while point is not None and point not in piece:
            piece.append(point)
            point = following[point]
        pieces.append(piece)
    return pieces


def segment_of(up: Point, down: Point) -> tuple[str, str]:
    """(name, kind) of the segment between two consecutive points."""
    if up[2] == "out" and down[2] == "in" and up[1] == down[1]:
        return f"{up[0]}>{down[0]}", "link"
    if up[2] == "in" and down[2] == "out" and up[0] == down[0]:
        return up[0], "node"
    return f"{up[0]}>{down[0]}", "span"


def join_by_time(pieces: list[list[Point]], blocks: dict[Point, deque[MarkedBlock]]) -> list[Point]:
    """Pieces that do not chain by declared links (no counting point at one end of a link)
    put in one line by when their first points saw the same blocks: the median offset of
    paired blocks from the first piece's first point. Needs the points' clock error below the
    latency between them (in the lab every point reads one host clock)."""
    if len(pieces) == 1:
        return pieces[0]
    reference = tuple(blocks[pieces[0][0]])

    def offset(piece: list[Point]) -> float:
        other = tuple(blocks[piece[0]])
        starts = {(b.flow_mon_id, b.sequence): b.first_ns for b in other}
        gaps = sorted(
            starts[(pair.flow_mon_id, pair.downstream_sequence)] - pair.first_ns
            for pair in block_loss(reference, other)
        )
        return gaps[len(gaps) // 2] if gaps else float("inf")

    return [point for piece in sorted(pieces, key=offset) for point in piece]


class _Flow:
    __slots__ = ("slice", "blocks", "reported", "settled", "heard_ns")

    def __init__(self, slice_name: str) -> None:
        self.slice = slice_name
        self.blocks: dict[Point, deque[MarkedBlock]] = {}
        self.reported: dict[tuple[Point, Point], set[int]] = {}  # upstream sequences reported per pair
        self.settled: dict[Point, set[int]] = {}  # sequences per point whose block's path was settled
        self.heard_ns: dict[Point, int] = {}  # when a block of each point last arrived (analyzer's clock)


def _near_unsettled(flow: _Flow) -> dict[Point, tuple[MarkedBlock, ...]]:
    """Each point's blocks that can bear on how the flow's unsettled blocks pair: a block
    pairs only with blocks overlapping it within `PAIRING_MAX_DELAY_NS`, chosen among its two
    neighbours of that colour, and competes only with blocks that could take the same
    partner; three such reaches (delay plus the longest block) on either side hold every
    block those choices read. Pairing the whole history of 64 blocks a point instead cost the
    analyzer ~15 times more once agents ship blocks as they end, a block or two at a time."""
    histories = flow.blocks
    unsettled = [
        b for point, history in histories.items() for b in history if b.sequence not in flow.settled.get(point, ())
    ]
    if not unsettled:
        return {point: () for point in histories}
    longest = max(b.last_ns - b.first_ns for history in histories.values() for b in history)
    reach = 3 * (PAIRING_MAX_DELAY_NS + longest)
    low = min(b.first_ns for b in unsettled) - reach
    high = max(b.last_ns for b in unsettled) + reach
    return {
        point: tuple(b for b in history if b.last_ns >= low and b.first_ns <= high)
        for point, history in histories.items()
    }


def _middle(block: MarkedBlock) -> float:
    return (block.first_ns + block.last_ns) / 2


def passed_by(history: deque[MarkedBlock], block: MarkedBlock, quiet_ns: int, stale_ns: int) -> bool:
    """Whether a point that has no block pairing with `block` (of another point) saw none of
    its packets: it counted consecutive blocks on either side of it, began after it, or has
    been silent for `stale_ns` (the flow left it: a path change, or its agent is gone)."""
    middle = _middle(block)
    before = [b.sequence for b in history if _middle(b) < middle]
    after = [b.sequence for b in history if _middle(b) > middle]
    if after and before:
        return min(after) == max(before) + 1
    if after:
        return min(after) == 0 or len(history) == history.maxlen
    return quiet_ns > stale_ns


class SegmentStore:
    def __init__(
        self,
        *,
        max_flows: int = 65_536,
        max_blocks: int = 64,
        max_recent: int = 20_000,
        max_points: int = 64,
        stale_s: float = 30.0,
    ) -> None:
        self._max_flows = max_flows
        self._max_blocks = max_blocks
        self._max_points = max_points
        self._stale_ns = int(stale_s * 1e9)  # three of an agent's default 10 s windows
        self._lock = threading.Lock()
        self._flows: OrderedDict[int, _Flow] = OrderedDict()
        self._recent: deque[SegmentBlock] = deque(maxlen=max_recent)
        self._totals: dict[tuple[str, str, str], SegmentTotals] = {}
        self.dropped = 0
        self.blocks_received = 0
        self.blocks_split = 0  # blocks whose flow took two paths (a path change inside the block)
        self.losing_found = 0  # segment blocks paired that lost packets, ever: a reader sees new losses came

    def add(self, blocks: Iterable[MarkedBlock], now_ns: int) -> list[SegmentBlock]:
        """Keep the blocks and pair what they complete; returns the segment blocks found now."""
        with self._lock:
            touched = set()
            for block in blocks:
                self.blocks_received += 1
                flow = self._flows.get(block.flow_mon_id)
                if flow is None:
                    if len(self._flows) >= self._max_flows:
                        self._flows.popitem(last=False)
                    flow = self._flows[block.flow_mon_id] = _Flow(block.slice)
                else:
                    self._flows.move_to_end(block.flow_mon_id)
                history = flow.blocks.get(block.point)
                if history is None:
                    if len(flow.blocks) >= self._max_points:
                        self.dropped += 1
                        continue
                    history = flow.blocks[block.point] = deque(maxlen=self._max_blocks)
                if len(history) == history.maxlen:
                    self.dropped += 1  # the oldest leaves unpaired if it was not yet
                history.append(block)
                flow.heard_ns[block.point] = now_ns
                touched.add(block.flow_mon_id)
            found = []
            for flow_mon_id in sorted(touched):
                found.extend(self._pair(flow_mon_id, self._flows[flow_mon_id], now_ns))
            return found

    def _pair(self, flow_mon_id: int, flow: _Flow, now_ns: int) -> list[SegmentBlock]:
        """Each block not yet settled: the points that saw it, once every other point is known
        to have missed it, are its path, and their segments are reported."""
        found = []
        matches: dict[tuple[Point, Point], dict[int, int]] = {}  # sequences paired between two points
        nearby = _near_unsettled(flow)
        for point, history in flow.blocks.items():
            settled = flow.settled.setdefault(point, set())
            for block in tuple(history):
                if block.sequence in settled:
                    continue
                path = self._path_of(flow, point, block, now_ns, matches, nearby)
                if path is None:
                    continue  # a point may still ship its part of the block
                for on_path, seen in path.items():
                    flow.settled.setdefault(on_path, set()).add(seen.sequence)
                found.extend(self._report(flow_mon_id, flow, path, now_ns))
            if len(settled) > 2 * self._max_blocks:  # sequences older than the history cannot come back
                oldest = min(b.sequence for b in history)
                flow.settled[point] = {s for s in settled if s >= oldest}
        return found

    def _path_of(
        self,
        flow: _Flow,
        point: Point,
        block: MarkedBlock,
        now_ns: int,
        matches: dict[tuple[Point, Point], dict[int, int]],
        nearby: dict[Point, tuple[MarkedBlock, ...]],
    ) -> dict[Point, MarkedBlock] | None:
        """The points that saw `block` (of `point`) with their blocks of it; None while a point
        neither saw it nor is known to have missed it. Histories are paired whole around the
        unsettled blocks (`nearby`; `matches` keeps the pairs for the call): a block alone
        would take a same-colour block two periods away at a point that has not shipped its
        own yet."""
        path = {point: block}
        for other, history in flow.blocks.items():
            if other == point:
                continue
            matched = matches.get((point, other))
            if matched is None:
                pairs = block_loss(nearby[point], nearby[other], max_delay_ns=PAIRING_MAX_DELAY_NS)
                matched = matches[(point, other)] = {p.upstream_sequence: p.downstream_sequence for p in pairs}
            sequence = matched.get(block.sequence)
            if sequence is not None:
                path[other] = next(b for b in history if b.sequence == sequence)
            elif not passed_by(history, block, now_ns - flow.heard_ns[other], self._stale_ns):
                return None
        return path

    def _report(self, flow_mon_id: int, flow: _Flow, path: dict[Point, MarkedBlock], now_ns: int) -> list[SegmentBlock]:
        """The segments of one block along the points that saw it. Where the block took two
        paths (two points of a site counting it the same way: the path changed inside the
        block), only the pieces chained by declared links are reported: joining them, or the
        two ends, would count the part that took the other path as lost."""
        pieces = chains(path)
        if len({(site, direction) for site, _, direction in path}) < len(path):
            self.blocks_split += 1
            pairs = [(up, down, *segment_of(up, down)) for piece in pieces for up, down in zip(piece, piece[1:])]
        else:
            line = join_by_time(pieces, flow.blocks)
            pairs = [(up, down, *segment_of(up, down)) for up, down in zip(line, line[1:])]
            if len(line) > 2:
                pairs.append((line[0], line[-1], f"{line[0][0]}>{line[-1][0]}", "end-to-end"))
        found = []
        for up, down, name, kind in pairs:
            reported = flow.reported.setdefault((up, down), set())
            if path[up].sequence in reported:
                continue
            for loss in block_loss((path[up],), (path[down],)):
                reported.add(loss.upstream_sequence)
                segment = SegmentBlock(
                    flow.slice,
                    flow_mon_id,
                    name,
                    kind,
                    point_name(up),
                    point_name(down),
                    loss.first_ns,
                    loss.upstream_packets,
                    loss.downstream_packets,
                    loss.mean_delay_ns,
                    loss.delay_samples,
                    now_ns,
                    loss.loss_known,
                )
                self._count(segment)
                found.append(segment)
            if len(reported) > 4 * self._max_blocks:  # older sequences can no longer come back
                floor = sorted(reported)[-2 * self._max_blocks]
                flow.reported[(up, down)] = {s for s in reported if s >= floor}
        return found

    def _count(self, segment: SegmentBlock) -> None:
        self._recent.append(segment)
        totals = self._totals.setdefault((segment.slice, segment.segment, segment.kind), SegmentTotals())
        if not segment.loss_known:
            totals.unknown_blocks += 1
            return
        if segment.lost > 0 and segment.kind != "end-to-end":  # what a diagnosis can name
            self.losing_found += 1
        totals.packets += segment.upstream_packets
        totals.lost += max(segment.lost, 0)
        totals.duplicated += max(-segment.lost, 0)
        totals.blocks += 1
        if segment.delay_ns is not None:
            totals.last_delay_ns = segment.delay_ns

    def totals(self) -> dict[tuple[str, str, str], SegmentTotals]:
        """(slice, segment, kind) -> a copy of its totals."""
        with self._lock:
            return {
                key: SegmentTotals(t.packets, t.lost, t.duplicated, t.blocks, t.last_delay_ns, t.unknown_blocks)
                for key, t in self._totals.items()
            }

    def recent(
        self,
        *,
        slice_name: str | None = None,
        flow_mon_id: int | None = None,
        segment: str | None = None,
        since_ns: int = 0,
    ) -> list[SegmentBlock]:
        """Recent segment blocks, oldest first; `segment` matches a segment's name ("a>b", "b")."""
        with self._lock:
            recent = tuple(self._recent)
        return [
            s
            for s in recent
            if s.seen_ns >= since_ns
            and (slice_name is None or s.slice == slice_name)
            and (flow_mon_id is None or s.flow_mon_id == flow_mon_id)
            and (segment is None or s.segment == segment)
        ]
