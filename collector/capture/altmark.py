"""Alternate marking (RFC 9341) of IPv6 traffic (RFC 9343): block counters and per-block loss.

The marker colours a flow's packets in alternating blocks with the L flag of the
Alternate Marking option (type 0x12, in Hop-by-Hop or Destination Options), and sets the
D flag on a few packets per block. Each measurement point (`MarkingPoint`) counts the
packets of every FlowMonID by colour; when the colour flips, a block ends. Two points on
a path count the same blocks, so upstream count - downstream count is the number of the
block's packets lost between them, exactly, for real traffic and without any probe. The
D-marked ("double-marked") packets are timestamped at both points: downstream time -
upstream time is the one-way delay between the points.

The option, RFC 9343 section 3 (after the option type and the data length of 4):

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    |              FlowMonID                |L|D|     Reserved      |

Choices:
- A block is final only when the colour flips a second time. Packets of its colour that
  arrive while the next block is less than half a block old (in time and in packets) still
  count into it: packets reordered across the boundary or late on a slower path are not
  mistaken for loss (RFC 9341 reads the counters in the middle of the next block for the
  same reason). Later ones start a new block. `flush()` finalises the open blocks when a
  measurement ends. A live point need not wait for the second flip: once every packet
  stamped before the current block turned half a block old has been counted
  (`close_ended`), no packet can join the block before it, which is final then, by the
  same rule and so alike at every point; half a block after its end, not a whole one.
- Blocks of two points are paired (`collector.contract.marked_blocks`, shared with the
  analyzer) per FlowMonID by colour and time: a downstream block
  goes with the upstream block of its colour whose middle is nearest to its own, among
  those that overlap it within `max_delay_ns`. Same-colour blocks are two periods apart,
  so this is unambiguous while the delay between points is below one block period.
- D-marked packets are paired by their order within a block, and only when both points
  saw the same number of them (a lost one would shift the pairs). The delay assumes the
  two points' clocks agree; in the lab both points read the same host clock, elsewhere
  they need PTP or NTP and the error of the sync adds to the delay.
- Memory is bounded: `max_flows` FlowMonIDs per point and `max_blocks` final blocks per
  FlowMonID, oldest dropped first; D timestamps are kept up to `MAX_DELAY_MARKS` per block.
- A flow silent for `idle_ns` (when set) has its open blocks read as final (`idle_blocks`):
  after a path change the point it left sees no flip to end them, and the part of the block
  it counted must still reach the analyzer. A packet after such a silence starts a new block,
  at every point alike, since the rule reads only the packets' own times.
"""

from __future__ import annotations

import heapq
import struct
from collections import deque
from dataclasses import dataclass

from collector.contract.marked_blocks import MAX_DELAY_MARKS, Block, BlockLoss, block_loss
from collector.wire.ipv6_ext import EXTENSION_HEADERS, MalformedPacket, walk_extension_headers

ALTMARK_OPTION = 0x12  # IANA: skip if unknown (00), may not change en route (0)
ALTMARK_DATA_LEN = 4
MAX_FLOW_MON_ID = (1 << 20) - 1
COLOURS = (0, 1)
__all__ = [
    "MAX_DELAY_MARKS",
    "AltMark",
    "Block",
    "BlockLoss",
    "MarkingPoint",
    "SegmentLoss",
    "block_loss",
    "find_altmark",
]

_DATA = struct.Struct("!I")


@dataclass(frozen=True, slots=True)
class AltMark:
    flow_mon_id: int
    loss_flag: int  # L: the colour, 0 or 1
    delay_flag: bool  # D: this packet is timed at every point


def decode_altmark(data: bytes) -> AltMark:
    """The option data (4 octets, without type and length)."""
    if len(data) != ALTMARK_DATA_LEN:
        raise MalformedPacket(f"alternate-marking option of {len(data)} octets, expected {ALTMARK_DATA_LEN}")
    word = _DATA.unpack(data)[0]
    return AltMark(word >> 12, (word >> 11) & 1, bool((word >> 10) & 1))


def encode_altmark(mark: AltMark) -> bytes:
    """The whole option: type, data length, data (reserved bits zero)."""
    if not 0 <= mark.flow_mon_id <= MAX_FLOW_MON_ID or mark.loss_flag not in COLOURS:
        raise ValueError(f"FlowMonID must be 0..{MAX_FLOW_MON_ID} and L 0 or 1, got {mark}")
    word = mark.flow_mon_id << 12 | mark.loss_flag << 11 | int(mark.delay_flag) << 10
    return bytes((ALTMARK_OPTION, ALTMARK_DATA_LEN)) + _DATA.pack(word)


def find_altmark(packet: bytes | memoryview, offset: int = 0) -> AltMark | None:
    """The option of the IPv6 packet at `offset` (Hop-by-Hop first, then Destination Options)."""
    if len(packet) <= offset:
        raise MalformedPacket("no IP header")
    if packet[offset] >> 4 != 6:
        return None  # IPv4 has no place for the option
    if len(packet) < offset + 40:
        raise MalformedPacket("truncated IPv6 header")
    if packet[offset + 6] not in EXTENSION_HEADERS:
        return None
    chain = walk_extension_headers(packet, offset)
    for option_type, data in (*chain.hop_by_hop, *chain.destination):
        if option_type == ALTMARK_OPTION:
            return decode_altmark(data)
    return None


def late_until(previous_first_ns: int, current_first_ns: int) -> int:
    """The first time stamp at which a packet of the previous block's colour is no longer late
    for it, the blocks having begun at these times (`MarkingPoint._is_late`'s time test,
    solved for the time): a packet stamped before may still join the previous block."""
    return current_first_ns + (current_first_ns - previous_first_ns + 1) // 2


class _OpenBlock:
    __slots__ = ("sequence", "colour", "packets", "first_ns", "last_ns", "delay_marks_ns")

    def __init__(self, sequence: int, colour: int, ts_ns: int) -> None:
        self.sequence = sequence
        self.colour = colour
        self.packets = 0
        self.first_ns = ts_ns
        self.last_ns = ts_ns
        self.delay_marks_ns: list[int] = []

    def add(self, ts_ns: int, delay_flag: bool) -> None:
        self.packets += 1
        self.last_ns = max(self.last_ns, ts_ns)
        if delay_flag and len(self.delay_marks_ns) < MAX_DELAY_MARKS:
            self.delay_marks_ns.append(ts_ns)

    def final(self, flow_mon_id: int) -> Block:
        return Block(
            flow_mon_id,
            self.sequence,
            self.colour,
            self.packets,
            self.first_ns,
            self.last_ns,
            tuple(self.delay_marks_ns),
        )


class _Flow:
    __slots__ = ("current", "previous", "closed", "next_sequence")

    def __init__(self, max_blocks: int) -> None:
        self.next_sequence = 0  # blocks keep counting across flush()
        self.current: _OpenBlock | None = None
        self.previous: _OpenBlock | None = None  # ended by the last flip, still taking late packets
        self.closed: deque[Block] = deque(maxlen=max_blocks)

    def new_block(self, colour: int, ts_ns: int) -> _OpenBlock:
        self.next_sequence += 1
        return _OpenBlock(self.next_sequence - 1, colour, ts_ns)


class MarkingPoint:
    """Counters of one measurement point: feed it every IPv6 packet seen there."""

    def __init__(self, name: str, *, max_flows: int = 4096, max_blocks: int = 4096, idle_ns: int | None = None) -> None:
        self.name = name
        self._max_flows = max_flows
        self._max_blocks = max_blocks
        self._idle_ns = idle_ns
        self._flows: dict[int, _Flow] = {}
        self.packets: dict[tuple[int, int], int] = {}  # (FlowMonID, colour) -> packets, ever
        self.malformed = 0
        # (time the block before a flow's current one stops taking late packets, FlowMonID, its
        # sequence), kept once `close_ended` is called (a live point): each flip adds one
        self._ends: list[tuple[int, int, int]] | None = None

    def observe(self, ts_ns: int, packet: bytes | memoryview, offset: int = 0) -> None:
        """One IP packet starting at `offset`, seen at `ts_ns`; unmarked ones are ignored."""
        try:
            mark = find_altmark(packet, offset)
        except MalformedPacket:
            self.malformed += 1
            return
        if mark is not None:
            self.count(ts_ns, mark)

    def count(self, ts_ns: int, mark: AltMark) -> None:
        flow = self._flows.get(mark.flow_mon_id)
        if flow is None:
            if len(self._flows) >= self._max_flows:
                evicted = next(iter(self._flows))
                del self._flows[evicted]
                for colour in COLOURS:
                    self.packets.pop((evicted, colour), None)
            flow = self._flows[mark.flow_mon_id] = _Flow(self._max_blocks)
        key = (mark.flow_mon_id, mark.loss_flag)
        self.packets[key] = self.packets.get(key, 0) + 1
        current = flow.current
        if current is not None and self._idle_ns is not None and ts_ns - current.last_ns > self._idle_ns:
            self._finish(mark.flow_mon_id, flow)
            current = None
        if current is None:
            flow.current = current = flow.new_block(mark.loss_flag, ts_ns)
        elif mark.loss_flag != current.colour:
            previous = flow.previous
            if previous is not None and previous.colour == mark.loss_flag and self._is_late(previous, current, ts_ns):
                previous.add(ts_ns, mark.delay_flag)
                return
            if previous is not None:
                flow.closed.append(previous.final(mark.flow_mon_id))
            flow.previous = current
            flow.current = current = flow.new_block(mark.loss_flag, ts_ns)
            if self._ends is not None:
                ended = flow.previous  # the block the flip ended: late packets may still join it
                due_ns = late_until(ended.first_ns, current.first_ns)
                heapq.heappush(self._ends, (due_ns, mark.flow_mon_id, ended.sequence))
        current.add(ts_ns, mark.delay_flag)

    @staticmethod
    def _is_late(previous: _OpenBlock, current: _OpenBlock, ts_ns: int) -> bool:
        """Whether a packet of the previous block's colour belongs to it rather than starting
        the next block: the current block is less than half a block old, in time and in packets.
        (Time alone misleads when a sender catches up in a burst; packets alone when the rate drops.)"""
        return (
            2 * (ts_ns - current.first_ns) < current.first_ns - previous.first_ns
            and 2 * current.packets < previous.packets
        )

    def close_ended(self, counted_through_ns: int) -> None:
        """Make final each block before a current one that no packet can join any more: every
        packet stamped before `counted_through_ns` has been counted, and none stamped later is
        late enough for it (`_is_late` fails once the current block is half a block old). For
        the thread that counts, since it ends blocks. The first call looks at every flow;
        later ones pop only the blocks due from a heap that each flip feeds."""
        ends = self._ends
        if ends is None:
            ends = self._ends = [
                (late_until(flow.previous.first_ns, flow.current.first_ns), flow_mon_id, flow.previous.sequence)
                for flow_mon_id, flow in self._flows.items()
                if flow.previous is not None and flow.current is not None
            ]
            heapq.heapify(ends)
        while ends and ends[0][0] <= counted_through_ns:
            _, flow_mon_id, sequence = heapq.heappop(ends)
            flow = self._flows.get(flow_mon_id)
            if flow is not None and flow.previous is not None and flow.previous.sequence == sequence:
                flow.closed.append(flow.previous.final(flow_mon_id))
                flow.previous = None  # (an entry for a block ended since, or a flow evicted, is stale)

    def flush(self) -> None:
        """End the measurement: the open blocks become final."""
        for flow_mon_id, flow in self._flows.items():
            self._finish(flow_mon_id, flow)

    @staticmethod
    def _finish(flow_mon_id: int, flow: _Flow) -> None:
        for block in (flow.previous, flow.current):
            if block is not None:
                flow.closed.append(block.final(flow_mon_id))
        flow.previous = flow.current = None

    def idle_blocks(self, flow_mon_id: int, now_ns: int) -> tuple[Block, ...]:
        """The open blocks of a flow silent for `idle_ns` at `now_ns`, as final (the flow keeps
        them open: the capture thread may be counting, and its next packet starts a new block)."""
        flow = self._flows.get(flow_mon_id)
        if flow is None or self._idle_ns is None:
            return ()
        previous, current = flow.previous, flow.current  # read once: the capture thread may replace them
        if current is None or now_ns - current.last_ns <= self._idle_ns:
            return ()
        return tuple(b.final(flow_mon_id) for b in (previous, current) if b is not None)

    def blocks(self, flow_mon_id: int | None = None) -> tuple[Block, ...]:
        """Final blocks, of one FlowMonID or all, oldest first per FlowMonID."""
        flows = self._flows
        ids = list(flows) if flow_mon_id is None else [flow_mon_id] if flow_mon_id in flows else []
        # tuple() of a deque copies it in one step, so a scrape thread may read while packets arrive
        return tuple(block for i in ids if i in flows for block in tuple(flows[i].closed))

    def flow_mon_ids(self) -> tuple[int, ...]:
        return tuple(self._flows)


class SegmentLoss:
    """The loss between two points, block by block as they become final (for metrics)."""

    def __init__(self, upstream: MarkingPoint, downstream: MarkingPoint, *, max_delay_ns: int = 1_000_000_000) -> None:
        self.upstream = upstream
        self.downstream = downstream
        self.name = f"{upstream.name}>{downstream.name}"
        self._max_delay_ns = max_delay_ns
        self._reported: dict[int, int] = {}  # FlowMonID -> newest upstream sequence reported
        self.lost_packets = 0  # a counter: blocks that came out with more packets downstream add nothing
        self.duplicated_packets = 0  # and are counted here
        self.blocks = 0

    def poll(self) -> list[BlockLoss]:
        """The pairs that became final since the last poll; adds them to the totals."""
        fresh = [
            pair
            for pair in block_loss(self.upstream, self.downstream, max_delay_ns=self._max_delay_ns)
            if pair.upstream_sequence > self._reported.get(pair.flow_mon_id, -1)
        ]
        for pair in fresh:
            self._reported[pair.flow_mon_id] = max(pair.upstream_sequence, self._reported.get(pair.flow_mon_id, -1))
            self.lost_packets += max(pair.lost, 0)
            self.duplicated_packets += max(-pair.lost, 0)
            self.blocks += 1
        return fresh
