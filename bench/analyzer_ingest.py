#!/usr/bin/env python3
"""Analyzer ingest: path windows per CPU second from shipment bodies to SLA trackers, side by
side with `json.loads` of the same bodies (the floor) in the same run.

Workload: PATHS paths (4 slices, spread over AGENTS agents) for INTERVALS intervals; each
agent ships one body per interval, encoded by `collector.contract.codec` as agents do, so a run ingests
PATHS x INTERVALS windows. Stages, each timed in CPU seconds of this process (the machines
are shared: wall time would count the neighbours), medians over repetitions:

- json:        `json.loads` of the bodies: plain dicts, the floor of any Python ingest
- decode:      `collector.contract.codec.ShipmentParser.from_dict` of those dicts: every field
               checked and the records built, without the JSON parsing
- parse:       `ShipmentParser.parse` of the bodies: json and decode together, as the analyzer does
- store:       `WindowStore.ingest` of parsed batches: dedup, interval closing, IntervalStats
               and the real SLA trackers per slice and per path (`analyzer.sla.path_trackers`'
               columns, with `analyzer.sla.verdicts`' verdicts) ("first sight":
               the first interval, which also creates every path's tracker)
- parse+store: what `POST /v1/windows` does per body, less HTTP, with the analyzer's
               garbage-collector thresholds (analyzer.gc_tuning), as every stage
- parse+store, default gc: the same with CPython's default thresholds
- parse+store, tracker objects: the same with one `SlaTracker` object per path, fed one by
               one (the store's path trackers before `analyzer.sla.path_trackers`' columns)
- parse+store, slice verdicts only: the same without per-path trackers (their share)
- resend:      parse+store of the same bodies again: every window a duplicate

    .venv/bin/python bench/analyzer_ingest.py                       # 10,000 paths, 6 intervals, 3 repetitions
    .venv/bin/python bench/analyzer_ingest.py --paths 1000 --intervals 3 --reps 1

No root needed. The target (issue 6) is 50,000 windows/s per core for parse+store.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import _common as c

from analyzer.gc_tuning import THRESHOLDS, tune_for_long_lived_store
from analyzer.sla.verdicts import SlaTracker, default_policies
from analyzer.store.memory import WindowStore
from collector.contract.codec import ShipmentParser, encode_body
from collector.contract.examples import example_window
from collector.contract.records import RTT_BUCKETS_NS, PathKey, PathWindow
from collector.contract.shipment import ShipmentBatch

SLICES = ("video", "egov", "data", "best-effort")
INTERVAL_NS = 10_000_000_000
FIRST = 170_000_000  # an interval number in 2023
TARGET = 50_000
DEFAULT_GC_THRESHOLDS = (700, 10, 10)  # CPython's, for the row that shows what the tuning gains


def make_window(key: PathKey, seq: int, rng: random.Random) -> PathWindow:
    """Ten probes, now and then one lost, from agents whose clocks are synchronised (one-way delays)."""
    sent = 10
    lost = 1 if rng.random() < 0.05 else 0
    buckets = [0] * (len(RTT_BUCKETS_NS) + 1)
    for _ in range(sent - lost):
        buckets[rng.choice((2, 3, 3, 4))] += 1
    return example_window(
        key,
        seq,
        interval_ns=INTERVAL_NS,
        target_address=f"fd00::{rng.randrange(1, 0xFFFF):x}",
        sent=sent,
        received=sent - lost,
        lost_forward=lost,
        rtt_buckets=tuple(buckets),
        forward_owd_p50_ns=1_900_000,
        reverse_owd_p50_ns=2_000_000,
        forward_owd_p99_ns=2_400_000,
        reverse_owd_p99_ns=2_500_000,
        clock_error_ns=40_000,
    )


def make_bodies(paths: int, agents: int, intervals: int) -> list[tuple[int, bytes]]:
    """(arrival time, body): one body per agent per interval, in time order, each arriving
    a second after its interval ended."""
    rng = random.Random(7)
    keys = [
        PathKey(f"site{i % agents}", f"t{i // len(SLICES)}", SLICES[i % len(SLICES)], "stamp") for i in range(paths)
    ]
    bodies = []
    for seq in range(FIRST, FIRST + intervals):
        for agent in range(agents):
            windows = tuple(make_window(k, seq, rng) for k in keys[agent::agents])
            body = encode_body(ShipmentBatch(f"site{agent}", windows, created_ns=seq))
            bodies.append(((seq + 1) * INTERVAL_NS + 10**9, body))
    return bodies


def cpu(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


class _NoVerdicts:
    """A path tracker that judges nothing: to show what per-path verdicts cost."""

    def add(self, stats) -> None:
        pass


def slice_verdicts_only(policy, interval_s, path=None):
    return SlaTracker(policy, interval_s) if path is None else _NoVerdicts()


def decode_cpu(bodies: list[tuple[int, bytes]]) -> float:
    """CPU seconds of decoding the parsed bodies into records. The dicts are dropped on
    return: kept alive, they would slow the garbage collector in the stages after."""
    loaded = [json.loads(b) for _, b in bodies]  # decoding takes them over: one use each
    decoder = ShipmentParser()
    return cpu(lambda: [decoder.from_dict(d) for d in loaded])


def run_stages(bodies: list[tuple[int, bytes]], agents: int, paths: int) -> dict[str, float]:
    """Windows per CPU second of each stage. The store stages are measured after the first
    interval, in which every path's tracker is created (reported as "store, first sight")."""
    policies = default_policies()
    windows = paths * len(bodies) // agents
    first, rest = bodies[:agents], bodies[agents:]
    steady = windows - paths
    figures = {}
    figures["json"] = windows / cpu(lambda: [json.loads(b) for _, b in bodies])
    figures["decode"] = windows / decode_cpu(bodies)
    parser = ShipmentParser()
    figures["parse"] = windows / cpu(lambda: [parser.parse(b) for _, b in bodies])
    batches = [(now, parser.parse(b)) for now, b in bodies]
    store = WindowStore(policies, catch_up_s=0)
    figures["store, first sight"] = paths / cpu(lambda: [store.ingest(b, now) for now, b in batches[:agents]])
    figures["store"] = steady / cpu(lambda: [store.ingest(b, now) for now, b in batches[agents:]])
    assert store.stats()["windows_ingested"] == windows
    for name, tracker_type, thresholds in (
        ("parse+store", None, THRESHOLDS),
        ("parse+store, default gc", None, DEFAULT_GC_THRESHOLDS),
        ("parse+store, tracker objects", SlaTracker, THRESHOLDS),
        ("parse+store, slice verdicts only", slice_verdicts_only, THRESHOLDS),
    ):
        store = WindowStore(policies, catch_up_s=0, tracker_type=tracker_type)
        parser = ShipmentParser()
        for now, b in first:
            store.ingest(parser.parse(b), now)
        gc.set_threshold(*thresholds)
        figures[name] = steady / cpu(
            lambda store=store, parser=parser: [store.ingest(parser.parse(b), now) for now, b in rest]
        )
        gc.set_threshold(*THRESHOLDS)
        stats = store.stats()
        assert stats["windows_late"] == 0 and stats["intervals_closed"] >= len(SLICES) * (len(bodies) // agents - 1)
    figures["resend"] = windows / cpu(lambda: [store.ingest(parser.parse(b), now) for now, b in bodies])
    stats = store.stats()
    assert stats["windows_ingested"] == windows and stats["windows_duplicate"] == windows, stats
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--paths", type=int, default=10_000)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--intervals", type=int, default=6)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--output", help="result file (default bench/results/analyzer_ingest-TIME.json)")
    parser.add_argument("--quiet", action="store_true", help="no table on stdout")
    args = parser.parse_args()

    tune_for_long_lived_store()  # as the analyzer process runs (analyzer.service)
    bodies = make_bodies(args.paths, args.agents, args.intervals)
    windows = args.paths * args.intervals
    reps = [run_stages(bodies, args.agents, args.paths) for _ in range(args.reps)]
    medians = {stage: c.median([r[stage] for r in reps]) for stage in reps[0]}
    result = {
        "benchmark": "analyzer_ingest",
        "environment": c.environment(),
        "parameters": vars(args)
        | {"windows_per_rep": windows, "body_bytes_per_window": sum(len(b) for _, b in bodies) / windows},
        "windows_per_cpu_second": medians,
        "repetitions": reps,
        "target": {"parse+store": TARGET, "met": medians["parse+store"] >= TARGET},
    }
    path = c.write_result("analyzer_ingest", result, args.output)
    if not args.quiet:
        print(
            c.table(
                ["stage", "windows/CPU s", "vs json.loads"],
                [[stage, rate, c.ratio(rate, medians["json"])] for stage, rate in medians.items()],
            )
        )
        print(f"\ntarget {TARGET:,}/s per core for parse+store: {'met' if result['target']['met'] else 'NOT met'}")
        print(f"result: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
