"""Per-slice traffic counters and top talkers, with bounded memory.

Counters are kept per (slice, exporter, direction): bytes, packets and flow records, all
already scaled by sampling. That is the label set of `xnet_flow_*_total`: exporters and
slices are few, directions three, so the series count stays small however many flows pass.

Top talkers per slice use the weighted Space-Saving sketch (Metwally et al., 2005), with
evictions batched (`SpaceSaving`): at most 2 x `capacity` source addresses are held per
slice, any address with more than total/capacity bytes is kept, and each reported count
overestimates the truth by at most its `error`.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import itemgetter

from collector.contract.records import FlowRecord

DEFAULT_TALKER_CAPACITY = 1000
_V4_MAPPED = bytes(10) + b"\xff\xff"
_COUNT = itemgetter(1)  # of a (key, count) item: sorts in C, not through a lambda per item


@dataclass(frozen=True, slots=True)
class TrafficTotals:
    bytes: int
    packets: int
    flows: int


@dataclass(frozen=True, slots=True)
class Talker:
    address: str
    bytes: int  # an overestimate by at most `error`
    error: int


class SpaceSaving:
    """Heaviest keys of a weighted stream in at most 2 x `capacity` entries.

    Space-Saving with batched eviction: a new key starts at `floor` (the largest count ever
    evicted, which bounds what it may have had before) plus its weight; when the table
    reaches twice the capacity, one sort keeps the `capacity` heaviest and raises `floor`.
    Counts never underestimate, and overestimate by at most their `error`; a key heavier
    than total / capacity is never evicted. One sort per `capacity` new keys costs less
    than a heap operation per key.

    A key's error is the floor when it came in, and the floor only moves at an eviction:
    keys that came in since the last one have the current floor as their error, so only
    the survivors of an eviction have theirs written down, and adding a key is one dict
    update."""

    __slots__ = ("capacity", "_counts", "_errors", "floor", "total")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._counts: dict[bytes, int] = {}
        self._errors: dict[bytes, int] = {}  # of the keys that survived an eviction
        self.floor = 0
        self.total = 0

    def add(self, key: bytes, weight: int) -> None:
        self.add_many((key,), (weight,))

    def add_many(self, keys: Sequence[bytes], weights: Sequence[int]) -> None:
        """`add` for each (key, weight) in turn, in one loop with local names."""
        counts, floor = self._counts, self.floor
        limit = 2 * self.capacity
        for key, weight in zip(keys, weights):
            counts[key] = counts.get(key, floor) + weight
            if len(counts) >= limit:  # only a new key grows it, and the eviction halves it
                self._evict()
                counts, floor = self._counts, self.floor
        self.total += sum(weights)

    def _evict(self) -> None:
        floor, capacity = self.floor, self.capacity
        ranked = sorted(self._counts.items(), key=_COUNT, reverse=True)
        if len(ranked) > capacity:
            self.floor = max(floor, ranked[capacity][1])
            del ranked[capacity:]
        self._counts = kept = dict(ranked)
        # the survivors that came in since the last eviction carry the floor of then
        self._errors = dict(zip(kept, map(self._errors.get, kept, repeat(floor))))

    def __len__(self) -> int:
        return len(self._counts)

    def top(self, limit: int) -> list[tuple[bytes, int, int]]:
        ranked = sorted(self._counts.items(), key=_COUNT, reverse=True)[:limit]
        errors, floor = self._errors, self.floor
        return [(key, count, errors.get(key, floor)) for key, count in ranked]


def address_text(address: bytes) -> str:
    if address[:12] == _V4_MAPPED:
        return socket.inet_ntop(socket.AF_INET, address[12:])
    return ipaddress.IPv6Address(address).compressed


def address_octets(text: str) -> bytes:
    address = ipaddress.ip_address(text)
    return address.packed if address.version == 6 else _V4_MAPPED + address.packed


class TrafficCounters:
    """What the slices carried, per exporter and direction, and who sent the most."""

    def __init__(self, talker_capacity: int = DEFAULT_TALKER_CAPACITY) -> None:
        self.talker_capacity = talker_capacity
        self._totals: dict[tuple[str, str, str], list[int]] = {}  # key -> [bytes, packets, flows]
        self._talkers: dict[str, SpaceSaving] = {}

    def add(self, record: FlowRecord) -> None:
        """One flow record (packets and bytes already scaled by sampling)."""
        self.count(
            record.slice, record.exporter, record.direction, record.packets, record.bytes, address_octets(record.source)
        )

    def count(self, slice_name: str, exporter: str, direction: str, packets: int, octets: int, source: bytes) -> None:
        """The hot-path form of `add`: the source as 16 octets (IPv4 as IPv4-mapped)."""
        totals = self._totals_of((slice_name, exporter, direction))
        totals[0] += octets
        totals[1] += packets
        totals[2] += 1
        talkers = self._talkers.get(slice_name)
        if talkers is None:
            talkers = self._talkers[slice_name] = SpaceSaving(self.talker_capacity)
        talkers.add(source, octets)

    def count_columns(
        self,
        slices: list[str],
        exporter: str,
        directions: list[str],
        packets: list[int],
        octets: list[int],
        sources: list[bytes],
    ) -> None:
        """`count` for a whole decoded data set at once (equal-length lists). The records are
        split by slice in one pass (none when all share one, the usual case), each slice's
        totals summed in C when all share one direction, and its sources go to its talkers
        in one `add_many`, in their order in the data set."""
        if not slices:
            return
        groups: dict[str, tuple[list[int], list[int], list[bytes]]]
        if slices.count(slices[0]) == len(slices):
            groups = {slices[0]: (packets, octets, sources)}
        else:
            groups = {}
            for name, n_packets, n_octets, source in zip(slices, packets, octets, sources):
                group = groups.get(name)
                if group is None:
                    group = groups[name] = ([], [], [])
                group[0].append(n_packets)
                group[1].append(n_octets)
                group[2].append(source)
        if directions.count(directions[0]) == len(directions):
            for name, (in_packets, in_octets, _) in groups.items():
                values = self._totals_of((name, exporter, directions[0]))
                values[0] += sum(in_octets)
                values[1] += sum(in_packets)
                values[2] += len(in_octets)
        else:
            for name, direction, n_packets, n_octets in zip(slices, directions, packets, octets):
                values = self._totals_of((name, exporter, direction))
                values[0] += n_octets
                values[1] += n_packets
                values[2] += 1
        talkers = self._talkers
        for name, (_, in_octets, in_sources) in groups.items():
            sketch = talkers.get(name)
            if sketch is None:
                sketch = talkers[name] = SpaceSaving(self.talker_capacity)
            sketch.add_many(in_sources, in_octets)

    def _totals_of(self, key: tuple[str, str, str]) -> list[int]:
        """[bytes, packets, flows] of (slice, exporter, direction), made on first use."""
        values = self._totals.get(key)
        if values is None:
            values = self._totals[key] = [0, 0, 0]
        return values

    def totals(self) -> dict[tuple[str, str, str], TrafficTotals]:
        """(slice, exporter, direction) -> totals so far."""
        return {key: TrafficTotals(*values) for key, values in list(self._totals.items())}

    def by_slice(self) -> dict[str, TrafficTotals]:
        summed: dict[str, list[int]] = {}
        for (slice_name, _, _), values in list(self._totals.items()):
            into = summed.setdefault(slice_name, [0, 0, 0])
            for i, value in enumerate(values):
                into[i] += value
        return {name: TrafficTotals(*values) for name, values in summed.items()}

    def top_talkers(self, slice: str, limit: int = 10) -> list[Talker]:
        """The source addresses that sent the most bytes in the slice, heaviest first."""
        talkers = self._talkers.get(slice)
        if talkers is None:
            return []
        return [Talker(address_text(key), count, error) for key, count, error in talkers.top(limit)]
