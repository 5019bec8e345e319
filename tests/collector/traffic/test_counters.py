"""Per-slice counters and the Space-Saving top talkers."""

from __future__ import annotations

import random

from collector.contract.records import FlowRecord
from collector.traffic.counters import SpaceSaving, TrafficCounters, address_octets


def flow(source: str, slice_name: str, octets: int, direction: str = "in") -> FlowRecord:
    return FlowRecord(
        "2001:db8::e", 1, source, "2001:db8::2", 17, 1, 2, 34, 0, slice_name, 1, octets, 0, 0, direction=direction
    )


def test_counters_per_slice_exporter_and_direction():
    counters = TrafficCounters()
    counters.add(flow("2001:db8::1", "video", 100))
    counters.add(flow("2001:db8::1", "video", 50, "out"))
    counters.add(flow("192.0.2.1", "egov", 7))
    totals = counters.totals()
    assert totals[("video", "2001:db8::e", "in")].bytes == 100
    assert totals[("video", "2001:db8::e", "out")].flows == 1
    assert counters.by_slice()["video"].bytes == 150
    assert [t.address for t in counters.top_talkers("egov")] == ["192.0.2.1"]
    assert counters.top_talkers("data") == []


def test_space_saving_finds_heavy_hitters_in_bounded_memory():
    rng = random.Random(7)
    sketch = SpaceSaving(capacity=20)
    exact: dict[bytes, int] = {}
    heavy = [address_octets(f"2001:db8::{i}") for i in range(1, 4)]
    for _ in range(20_000):
        key = rng.choice(heavy) if rng.random() < 0.5 else address_octets(f"2001:db8:1::{rng.randrange(5000)}")
        weight = rng.randrange(1, 1500)
        sketch.add(key, weight)
        exact[key] = exact.get(key, 0) + weight
    top = sketch.top(3)
    assert {key for key, _, _ in top} == set(heavy)
    assert len(sketch) < 40  # bounded: twice the capacity at most
    for key, count, error in top:
        assert count - error <= exact[key] <= count  # the guarantee of the sketch


def test_counting_columns_equals_counting_record_by_record():
    # the receiver's column form against `count` per record, over data sets of one slice and
    # of several, of one direction and of several, and sketches small enough to evict
    rng = random.Random(3)
    by_columns, by_records = TrafficCounters(talker_capacity=8), TrafficCounters(talker_capacity=8)
    for _ in range(600):
        size = rng.randrange(1, 30)
        slices = [rng.choice(("video", "egov", "data")) for _ in range(size)] if rng.random() < 0.7 else ["egov"] * size
        if rng.random() < 0.5:
            directions = [rng.choice(("in", "out", "unknown")) for _ in range(size)]
        else:
            directions = [rng.choice(("in", "out"))] * size
        packets = [rng.randrange(1, 100) for _ in range(size)]
        octets = [rng.randrange(40, 150_000) for _ in range(size)]
        sources = [address_octets(f"2001:db8::{rng.randrange(1, 60):x}") for _ in range(size)]
        exporter = rng.choice(("2001:db8::e", "192.0.2.9"))
        by_columns.count_columns(slices, exporter, directions, packets, octets, sources)
        for row in zip(slices, directions, packets, octets, sources):
            name, direction, n_packets, n_octets, source = row
            by_records.count(name, exporter, direction, n_packets, n_octets, source)
    assert by_columns.totals() == by_records.totals() and len(by_columns.totals()) > 6
    assert list(by_columns.totals()) == list(by_records.totals())  # same order of first appearance too
    for name in ("video", "egov", "data"):
        assert by_columns.top_talkers(name, 20) == by_records.top_talkers(name, 20) != []


def reference_top(stream: list[tuple[bytes, int]], capacity: int) -> list[tuple[bytes, int, int]]:
    """Space-Saving with batched eviction written plainly: every key's error written down when
    it comes in, one stable sort by count at each eviction."""
    counts: dict[bytes, int] = {}
    errors: dict[bytes, int] = {}
    floor = 0
    for key, weight in stream:
        if key in counts:
            counts[key] += weight
            continue
        counts[key], errors[key] = floor + weight, floor
        if len(counts) >= 2 * capacity:
            ranked = sorted(counts.items(), key=lambda item: item[1], reverse=True)
            if len(ranked) > capacity:
                floor = max(floor, ranked[capacity][1])
            counts = dict(ranked[:capacity])
            errors = {key: errors[key] for key in counts}
    ranked = sorted(counts.items(), key=lambda item: item[1], reverse=True)
    return [(key, count, errors[key]) for key, count in ranked]


def test_space_saving_keeps_the_errors_of_the_plain_algorithm():
    # errors are written down only for the survivors of an eviction (the others carry the
    # current floor): the same counts, errors and order as writing each one down
    rng = random.Random(11)
    for capacity in (1, 3, 8):
        sketch = SpaceSaving(capacity)
        stream = []
        for _ in range(400):
            size = rng.randrange(1, 12)
            batch = [(address_octets(f"2001:db8::{rng.randrange(1, 40):x}"), rng.randrange(1, 50)) for _ in range(size)]
            stream.extend(batch)
            if rng.random() < 0.5:
                sketch.add_many([key for key, _ in batch], [weight for _, weight in batch])
            else:
                for key, weight in batch:
                    sketch.add(key, weight)
        assert sketch.top(4 * capacity) == reference_top(stream, capacity)
        assert sketch.total == sum(weight for _, weight in stream) and sketch.floor > 0
