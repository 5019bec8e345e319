"""What an agent ships to an analyzer (its wire form: `collector.contract.codec`).

One `ShipmentBatch` carries the windows an agent closed (usually one interval's worth),
the paths it traced meanwhile and its own health.

Delivery is at least once: an agent that crashed or lost a response sends a batch again,
and a spool that overflowed may resend a batch without its oldest windows. A receiver
therefore deduplicates windows by (key, seq) (`seq` is stable across agent restarts: it
numbers wall-clock-aligned windows); observations and health are snapshots, and a repeat
of one is harmless. A batch too large for one request arrives as several bodies, in
order; only the first carries the observations, health and marked blocks (the
alternate-marking blocks its counting points finished: `collector.contract.marked_blocks`).
"""

from __future__ import annotations

from dataclasses import dataclass

from collector.contract.marked_blocks import MarkedBlock
from collector.contract.records import CollectorHealth, PathObservation, PathWindow


@dataclass(frozen=True, slots=True)
class ShipmentBatch:
    """Windows, traced paths and health that leave an agent together."""

    site: str
    windows: tuple[PathWindow, ...]  # oldest first
    observations: tuple[PathObservation, ...] = ()
    health: CollectorHealth | None = None
    created_ns: int = 0  # when the agent made the batch (wall clock, ns)
    marked_blocks: tuple[MarkedBlock, ...] = ()  # oldest first per counting point and FlowMonID
