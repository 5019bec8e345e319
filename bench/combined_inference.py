#!/usr/bin/env python3
"""Root-cause inference of a partitioned analysis at national scale, beside one analyzer's.

One epoch of the national simulation (bench/rootcause: ~66,800 paths at scale 1, a fault of
a class drawn per repetition), with reverse routes as traces give them (a path's is the
forward route of its target site's agent's path back in the slice, where there is one; the
simulation knows every reverse route, an analyzer does not), is inferred two ways in one run:

    single:   the engine over the whole epoch, as one analyzer of every path runs it
    combined: the epoch split over P partitions by its source site (as the bus maps sites),
              each partition's paths without the reverse routes whose far agent is in
              another partition; each partition's `PartitionEvidence` encoded (its bytes are
              the message size on the bus), the messages decoded and validated as the
              combiner does, assembled into one epoch (`EpochAssembler`: the union, reverse
              routes filled) and the same engine run over it

Reported per repetition and as medians: CPU seconds of the single engine, of each step of
the combined one (encode: summed over the partitions, which do it in parallel; decode,
assembly and engine: the combiner's), the combiner's total and its ratio to the single
engine, the bytes per partition message and per epoch in all, and whether the combined
diagnoses equal the single analyzer's. What it says: whether one combiner infers every
interval (1 s at national scale) or once per N intervals.

    .venv/bin/python bench/combined_inference.py                          # scale 1, P = 5, 3 reps
    .venv/bin/python bench/combined_inference.py --scale 0.05 --reps 1    # the smoke
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import _common as c

from analyzer.combiner_epochs import EpochAssembler, union_epoch
from analyzer.partial_evidence import PartitionEvidence
from analyzer.rootcause.engine import diagnose
from analyzer.rootcause.model import Epoch
from bench.rootcause.__main__ import build_world
from bench.rootcause.faults import SINGLE_CLASSES, FaultDrawer
from bench.rootcause.simulate import Impairments

INTERVAL_NS = 1_000_000_000  # national windows: 1 s
AT_NS = 1_800_000_000 * INTERVAL_NS


def partition_of(site: str, partitions: int) -> int:
    """A site's partition: a stable hash, as the bus's mapping is (not nats-server's own)."""
    return int.from_bytes(hashlib.sha256(site.encode()).digest()[:4], "big") % partitions


def split(epoch: Epoch, partitions: int) -> list[Epoch]:
    """Each partition's epoch: its sources' paths, without the reverse routes its agents did
    not trace (the far end's site in another partition)."""
    parts: list[list] = [[] for _ in range(partitions)]
    for p in epoch.paths:
        mine = partition_of(p.source, partitions)
        far = None if p.target_site is None else partition_of(p.target_site, partitions)
        parts[mine].append(p if far == mine else replace(p, reverse=None))
    return [Epoch(tuple(paths), (), epoch.at_ns) for paths in parts]


def keyed(diagnoses) -> list[tuple]:
    return [(d.kind, tuple(sorted(d.suspects)), tuple(sorted(d.slices))) for d in diagnoses]


def repetition(world, drawer, fault_class: str, seed: int, partitions: int) -> dict:
    impairments = Impairments()
    drawer.draw(fault_class, random.Random(f"{seed}/{fault_class}"), impairments)
    simulated = world.epoch(impairments, np.random.default_rng(seed))
    traced = tuple(replace(p, reverse=None) for p in simulated.paths)
    epoch = union_epoch([Epoch(traced, simulated.hosts, AT_NS)], AT_NS)
    started = time.process_time()
    single = diagnose(epoch)
    single_s = time.process_time() - started

    started = time.process_time()
    messages = [
        PartitionEvidence.of(part, i, partitions, INTERVAL_NS).encode()
        for i, part in enumerate(split(epoch, partitions))
    ]
    encode_s = time.process_time() - started
    started = time.process_time()
    decoded = [PartitionEvidence.decode(m) for m in messages]
    decode_s = time.process_time() - started
    started = time.process_time()
    assembler = EpochAssembler(partitions, INTERVAL_NS)
    done = []
    for evidence in decoded:
        done += assembler.add(evidence, 0)
    union = done[0].epoch()
    assemble_s = time.process_time() - started
    started = time.process_time()
    combined = diagnose(union)
    engine_s = time.process_time() - started
    combiner_s = decode_s + assemble_s + engine_s
    return {
        "fault": fault_class,
        "paths": len(epoch.paths),
        "single_engine_s": round(single_s, 3),
        "encode_s_all_partitions": round(encode_s, 3),
        "decode_s": round(decode_s, 3),
        "assemble_s": round(assemble_s, 3),
        "combined_engine_s": round(engine_s, 3),
        "combiner_s": round(combiner_s, 3),
        "ratio_combiner_to_single": c.ratio(combiner_s, single_s),
        "bytes_per_partition_max": max(len(m) for m in messages),
        "bytes_per_epoch": sum(len(m) for m in messages),
        "bytes_per_path": round(sum(len(m) for m in messages) / len(epoch.paths), 1),
        "same_epoch": union == epoch,
        "same_diagnoses": keyed(combined) == keyed(single),
        "reverse_known": sum(p.reverse is not None for p in union.paths),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="of the national network (1: ~66,800 paths)")
    parser.add_argument("--partitions", type=int, default=5)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", metavar="FILE", help="write the result here (default bench/results/)")
    args = parser.parse_args(argv)
    started = time.process_time()
    world = build_world(args.seed, args.scale)
    print(f"world: {len(world.plan)} paths, built in {time.process_time() - started:.1f} CPU s", flush=True)
    drawer = FaultDrawer(world)
    classes = ["gray-loss", *[k for k in SINGLE_CLASSES if k != "gray-loss"]]
    runs = []
    for rep in range(args.reps):
        runs.append(repetition(world, drawer, classes[rep % len(classes)], args.seed + rep, args.partitions))
        print(runs[-1], flush=True)
    medians = {
        key: c.median([r[key] for r in runs])
        for key in (
            "single_engine_s",
            "encode_s_all_partitions",
            "decode_s",
            "assemble_s",
            "combined_engine_s",
            "combiner_s",
            "bytes_per_partition_max",
            "bytes_per_epoch",
            "bytes_per_path",
        )
    }
    medians["ratio_combiner_to_single"] = c.ratio(medians["combiner_s"], medians["single_engine_s"])
    medians["intervals_per_inference_at_1s"] = max(1, int(np.ceil(medians["combiner_s"])))
    headers = ["", "single engine s", "combiner s", "ratio", "bytes/epoch", "bytes/path", "same epoch, hints"]
    rows = [
        [
            r["fault"],
            r["single_engine_s"],
            r["combiner_s"],
            r["ratio_combiner_to_single"],
            r["bytes_per_epoch"],
            r["bytes_per_path"],
            f"{r['same_epoch']}, {r['same_diagnoses']}",
        ]
        for r in runs
    ]
    rows.append(
        [
            "median",
            medians["single_engine_s"],
            medians["combiner_s"],
            medians["ratio_combiner_to_single"],
            medians["bytes_per_epoch"],
            medians["bytes_per_path"],
            "",
        ]
    )
    print(c.table(headers, rows))
    path = c.write_result(
        "combined_inference",
        {"environment": c.environment(), "args": vars(args), "runs": runs, "medians": medians},
        args.json,
    )
    print(f"result: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
