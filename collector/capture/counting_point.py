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
"""

from __future__ import annotations

from collector.capture.altmark import AltMark, MarkingPoint
from collector.contract.marked_blocks import MarkedBlock
from collector.traffic.classifier import SliceClassifier

DEFAULT_MAX_BLOCKS = 64  # a minute of 1 s blocks per flow waiting to be shipped
DEFAULT_MAX_TAKE = 5_000  # half a shipment body's bound
DEFAULT_IDLE_S = 3.0  # three of the marker's default 1 s blocks


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
            fresh = [b for b in final if b.sequence > newest]
            if not fresh:
                continue
            self.blocks_dropped += fresh[0].sequence - newest - 1  # fell out of the bounded history
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
                )
                for b in fresh
            )
            self._taken[flow_mon_id] = fresh[-1].sequence
            if len(taken) >= self._max_take:
                break
        if len(self._taken) > 2 * self._max_flows:
            self._taken = {k: v for k, v in self._taken.items() if k in self._flows}
        return taken
