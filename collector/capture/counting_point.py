"""A counting point of in-situ flow telemetry: an agent's interface counting marked packets
per FlowMonID, colour and direction, whose finished blocks the agent ships to the analyzer.

`CountingPoint` is the `MarkingPoint` of one interface (the capture's `altmark_point`, named
after the link the interface is on, the same name at both ends of the link) that also
remembers, per FlowMonID, the direction its packets crossed the interface and the slice the
agent's classifier puts them in (from the first packet seen: a flow keeps both). The live
capture hands it each packet with its direction (`observe_directed`). `take_final` gives the
blocks finished since the last call as the contract's `MarkedBlock`s.

Bounds: the `MarkingPoint`'s (`max_flows` FlowMonIDs, `max_blocks` finished blocks each,
oldest dropped first); blocks that fell out before they were taken are counted in
`blocks_dropped`, and at most `max_take` blocks leave per call (the rest wait their turn).

A flow silent for `idle_s` (longer than a block period: the marker flips at least that often)
ships its open blocks too, once: a path change leaves the point it left with a block that no
flip will end, holding the part of the block that went this way.

Blocks end half a block after the flip, not at the next one: with each reading of the drop
counter the capture says when a receive last found its socket empty; every packet stamped
before then (less `STAMP_TO_SOCKET_NS`, a packet still on its way into the socket) has been
counted, and the point ends the blocks no later packet may join (`MarkingPoint.close_ended`).
A turn of bursts that ends with packets still queued (a flooded socket) moves nothing.

Capture drops: the live capture tells the point each time it reads its socket's kernel drop
counter (`note_drops`): how many packets the kernel dropped since its previous reading, which
arrived after the first packet it received since then (drops need a full buffer, and that
packet was the oldest in it) and before this reading. A block whose reach (from the end of
the block before it to the end of its late window, while the one after it is less than half
a block old, or its own last packet, whichever is later: the times its dropped packets could
have had) meets such a spell ships with
`capture_dropped` (drops also move packets between blocks: a block left short takes the
next block's first packets as late ones of the block before it), and the analyzer does not read its
missing packets as loss. A block leaves only once the counter was read past its reach.
"""

from __future__ import annotations

from collections import deque

from collector.capture.altmark import AltMark, MarkingPoint, late_until
from collector.contract.marked_blocks import Block, MarkedBlock
from collector.traffic.classifier import SliceClassifier

DEFAULT_MAX_BLOCKS = 64  # a minute of 1 s blocks per flow waiting to be shipped
DEFAULT_MAX_TAKE = 5_000  # half a shipment body's bound
DEFAULT_IDLE_S = 3.0  # three of the marker's default 1 s blocks
# A packet's way from its kernel time stamp (taken as it is queued for the stack) into the
# capture's socket: the softirq that delivers it may wait for ksoftirqd on a loaded host.
STAMP_TO_SOCKET_NS = 50_000_000
MAX_DROP_SPELLS = 1024  # spells of capture drops remembered (consecutive readings with drops make one)


class CountingPoint(MarkingPoint):
    def __init__(
        self,
        link: str,
        classifier: SliceClassifier,
        *,
        max_flows: int = 4096,
        max_blocks: int = DEFAULT_MAX_BLOCKS,
        max_take: int = DEFAULT_MAX_TAKE,
        idle_s: float = DEFAULT_IDLE_S,
    ) -> None:
        super().__init__(link, max_flows=max_flows, max_blocks=max_blocks, idle_ns=int(idle_s * 1e9))
        self.link = link
        self._classifier = classifier
        self._max_take = max_take
        self._flow_facts: dict[int, tuple[str, str]] = {}  # FlowMonID -> (direction, slice)
        self._taken: dict[int, int] = {}  # FlowMonID -> newest sequence taken
        self._packet: tuple[memoryview | bytes, int, bool] | None = None
        self.blocks_dropped = 0
        self._drop_spells: deque[tuple[int, int]] = deque(maxlen=MAX_DROP_SPELLS)  # (after ns, by ns)
        self._drops_forgotten_ns: int | None = None  # spells ending before this fell out of the bounded list
        self.drops_read_ns: int | None = None  # the capture's last reading of its drop counter; None: it reports none
        self.capture_drops = 0  # packets the capture socket dropped while this point counted

    def note_drops(self, after_ns: int, read_ns: int, dropped: int, drained_ns: int | None = None) -> None:
        """The capture read its kernel drop counter at `read_ns`: `dropped` packets were lost
        there since its previous reading, all arriving after `after_ns`; and it last found its
        socket empty at `drained_ns` (None: never yet)."""
        if dropped:
            self.capture_drops += dropped
            spells = self._drop_spells
            if spells and spells[-1][1] >= after_ns:  # one spell over consecutive readings
                spells[-1] = (spells[-1][0], read_ns)
            else:
                if len(spells) == spells.maxlen:
                    self._drops_forgotten_ns = spells[0][1]
                spells.append((after_ns, read_ns))
        self.drops_read_ns = read_ns
        if drained_ns is not None:  # what was stamped before it (less the way into the socket) is counted
            self.close_ended(drained_ns - STAMP_TO_SOCKET_NS)

    def _dropped_within(self, start_ns: int, end_ns: int) -> bool:
        if self._drops_forgotten_ns is not None and start_ns < self._drops_forgotten_ns:
            return True
        return any(after < end_ns and by > start_ns for after, by in tuple(self._drop_spells))

    def _reaches(self, flow_mon_id: int, final: tuple[Block, ...]) -> list[tuple[int, int]]:
        """Per block of `final` (in sequence order), the span its packets could have arrived in:
        from the block before it to the end of its late window after the block after it began
        (open ones included), or as far as the block lasted where it has no neighbour."""
        flow = self._flows.get(flow_mon_id)
        opened = [] if flow is None else [(b.sequence, b.first_ns) for b in (flow.previous, flow.current) if b]
        reaches: list[tuple[int, int]] = []
        for i, block in enumerate(final):
            span = max(block.last_ns - block.first_ns, 1)
            start = min(final[i - 1].last_ns, block.first_ns) if i else block.first_ns - span
            neighbours = [(b.sequence, b.first_ns) for b in final[i + 1 : i + 2]] + opened
            later = [first_ns for sequence, first_ns in neighbours if sequence > block.sequence]
            # a block takes late packets of its colour until the next is half a block old
            # (`MarkingPoint._is_late`): packets dropped that long after the next began were its own
            end = max(late_until(block.first_ns, min(later)), block.last_ns) if later else block.last_ns + span
            reaches.append((start, end))
        return reaches

    def observe_directed(self, ts_ns: int, packet: memoryview | bytes, offset: int, outgoing: bool) -> None:
        self._packet = (packet, offset, outgoing)
        try:
            self.observe(ts_ns, packet, offset)
        finally:
            self._packet = None

    def count(self, ts_ns: int, mark: AltMark) -> None:
        if mark.flow_mon_id not in self._flow_facts and self._packet is not None:
            self._note_flow(mark.flow_mon_id, *self._packet)
        super().count(ts_ns, mark)

    def _note_flow(self, flow_mon_id: int, packet: memoryview | bytes, offset: int, outgoing: bool) -> None:
        if len(self._flow_facts) >= 2 * self._max_flows:  # forget the flows the point itself forgot
            self._flow_facts = {k: v for k, v in self._flow_facts.items() if k in self._flows}
        dscp = (packet[offset] & 0x0F) << 2 | packet[offset + 1] >> 6
        slice_name = self._classifier.classify(
            bytes(packet[offset + 8 : offset + 24]), bytes(packet[offset + 24 : offset + 40]), dscp
        )
        self._flow_facts[flow_mon_id] = ("out" if outgoing else "in", slice_name)

    def take_final(self, site: str, now_ns: int | None = None) -> list[MarkedBlock]:
        """Blocks finished since the last call (of flows whose direction is known), oldest first
        per flow; with `now_ns` (the capture's clock), also the open blocks of flows silent since
        `idle_s` before it."""
        taken: list[MarkedBlock] = []
        for flow_mon_id in self.flow_mon_ids():
            facts = self._flow_facts.get(flow_mon_id)
            if facts is None:
                continue
            newest = self._taken.get(flow_mon_id, -1)
            final = self.blocks(flow_mon_id)
            if now_ns is not None:
                final += self.idle_blocks(flow_mon_id, now_ns)
            if final and final[-1].sequence < newest:  # the point forgot the flow and met it again
                newest = -1
            read_ns = self.drops_read_ns
            fresh = []
            for block, (start, end) in zip(final, self._reaches(flow_mon_id, final)):
                if block.sequence <= newest:
                    continue
                if read_ns is not None and end > read_ns:
                    break  # the drops of its reach are not read yet: it waits
                fresh.append((block, self._dropped_within(start, end)))
            if not fresh:
                continue
            self.blocks_dropped += fresh[0][0].sequence - newest - 1  # fell out of the bounded history
            fresh = fresh[: self._max_take - len(taken)]
            direction, slice_name = facts
            taken.extend(
                MarkedBlock(
                    site,
                    self.link,
                    direction,
                    slice_name,
                    b.flow_mon_id,
                    b.sequence,
                    b.colour,
                    b.packets,
                    b.first_ns,
                    b.last_ns,
                    b.delay_marks_ns,
                    dropped,
                )
                for b, dropped in fresh
            )
            self._taken[flow_mon_id] = fresh[-1][0].sequence
            if len(taken) >= self._max_take:
                break
        if len(self._taken) > 2 * self._max_flows:
            self._taken = {k: v for k, v in self._taken.items() if k in self._flows}
        return taken
