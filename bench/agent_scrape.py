#!/usr/bin/env python3
"""The agent's /metrics at scale: CPU seconds per scrape of N targets x S slices (one path
each), our cached text renderer (`AgentMetrics.text`) side by side with prometheus_client's
`generate_latest` over the same registry, in the same run.

Each repetition folds one window into every path (so every path's totals changed: the cache
must render them all again), then times, in turns, with the process's CPU clock:

- peer:   generate_latest(registry), what /metrics cost before;
- ours:   AgentMetrics.text() after the windows changed (every path rendered again);
- cached: AgentMetrics.text() again, nothing changed (a scrape between two windows);
- gzip:   gzip level 1 of the page, what a scrape with Accept-Encoding: gzip adds.

Every repetition also checks that ours and the peer's bytes are identical (the process
metrics left out, they change between two calls). Medians over repetitions and the ratios
peer / ours are reported.

    .venv/bin/python bench/agent_scrape.py                       # 10,000 targets x 4 slices, 3 repetitions
    .venv/bin/python bench/agent_scrape.py --targets 100 --reps 1
"""

from __future__ import annotations

import argparse
import gzip
import sys
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c

SLICES = ("video", "egov", "data", "best-effort")
WINDOW_NS = 10_000_000_000
T0 = 1_800_000_000 * 1_000_000_000


def build(targets: int, slices: int, counts_from: int = 0):
    from collector.contract.examples import example_window
    from collector.contract.records import PathKey
    from collector.outputs.prometheus.agent import agent_metrics
    from collector.outputs.prometheus.state import MetricsState

    state = MetricsState()
    keys = [
        PathKey("site-a", f"fd00:5ca1::{t:x}", SLICES[s % len(SLICES)] + ("" if s < len(SLICES) else f"-{s}"), "stamp")
        for t in range(1, targets + 1)
        for s in range(slices)
    ]

    def fold(seq: int, extra: int = 0) -> None:
        """Window `seq` of every path; with `extra`, path i has `extra` + 7 i more probes sent
        and answered (in 2-5 ms): no two paths share a count, as when they started apart."""
        start = T0 + (seq - 1) * WINDOW_NS
        windows = [
            example_window(
                key,
                seq,
                start_ns=start,
                end_ns=start + WINDOW_NS,
                target_address=key.target,
                sent=10 + more,
                received=9 + (i + seq) % 2 + more,
                rtt_buckets=(3, 2, 2, 1 + more, 1, (i + seq) % 2, 0, 0, 0, 0, 0, 0, 0),
                rtt_sum_ns=4_321_000 + i * 7 + seq + more * 3_000_000,
                ipdv_mean_abs_ns=12_345 + i,
                pdv_p99_ns=67_890 + seq,
            )
            for i, key in enumerate(keys)
            for more in [extra + 7 * i if extra else 0]
        ]
        state.apply(windows)

    if counts_from:
        fold(0, counts_from)
    return agent_metrics(state, process_metrics=False), fold, len(keys)


def cpu(call) -> tuple[float, object]:
    start = time.process_time()
    out = call()
    return time.process_time() - start, out


def measure(targets: int, slices: int, reps: int, verbose: bool, counts_from: int = 0) -> dict:
    from prometheus_client import generate_latest

    metrics, fold, paths = build(targets, slices, counts_from)
    runs = []
    for rep in range(reps):
        fold(rep + 1)
        peer_s, peer = cpu(lambda: generate_latest(metrics.registry))
        ours_s, ours = cpu(metrics.text)
        cached_s, cached = cpu(metrics.text)
        gzip_s, _ = cpu(partial(gzip.compress, ours, compresslevel=1))
        if ours != peer or cached != peer:
            raise SystemExit(f"repetition {rep + 1}: our exposition differs from generate_latest's")
        run = {"peer_s": peer_s, "ours_s": ours_s, "cached_s": cached_s, "gzip_s": gzip_s, "bytes": len(ours)}
        runs.append(run)
        if verbose:
            print(
                f"rep {rep + 1}: generate_latest {peer_s:.3f} s, ours {ours_s:.3f} s, "
                f"unchanged {cached_s:.3f} s, gzip {gzip_s:.3f} s CPU, {len(ours) / 2**20:.1f} MiB",
                flush=True,
            )
    med = {key: c.median([r[key] for r in runs]) for key in ("peer_s", "ours_s", "cached_s", "gzip_s")}
    return {
        "paths": paths,
        "series": paths * 25,
        "runs": runs,
        "median_cpu_s": med,
        "ratios": {
            "peer/ours": c.ratio(med["peer_s"], med["ours_s"]),
            "peer/cached": c.ratio(med["peer_s"], med["cached_s"]),
        },
        "identical": True,
    }


def report(result: dict) -> str:
    med, ratios = result["median_cpu_s"], result["ratios"]
    rows = [
        ["prometheus_client generate_latest", med["peer_s"], "1.00x"],
        ["xnetmon text, every path changed", med["ours_s"], f"{ratios['peer/ours']:.1f}x"],
        ["xnetmon text, nothing changed", med["cached_s"], f"{ratios['peer/cached']:.1f}x"],
        ["gzip level 1 of the page", med["gzip_s"], "-"],
    ]
    return "\n".join(
        [
            f"{result['paths']:,} paths ({result['series']:,} series), CPU seconds per scrape, medians",
            c.table(["renderer", "CPU s", "peer / this"], rows),
            "bytes identical to generate_latest's in every repetition",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=10000)
    parser.add_argument("--slices", type=int, default=4)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--counts-from",
        type=int,
        default=0,
        help="probes every path has sent and had answered before the first repetition, and 7 more for each "
        "path before it (default 0); from 1,000,000 on the counts are written in Go's exponent form, as after "
        "~12 days at one probe a second",
    )
    parser.add_argument("--output", help="result file (default bench/results/agent_scrape-TIME.json)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no per-repetition lines")
    args = parser.parse_args(argv)
    if args.targets < 1 or args.slices < 1 or args.reps < 1:
        parser.error("--targets, --slices and --reps must be at least 1")
    if args.counts_from < 0:
        parser.error("--counts-from must not be negative")
    sys.path.insert(0, str(c.REPO))
    result = measure(args.targets, args.slices, args.reps, not args.quiet, args.counts_from)
    payload = {
        "benchmark": "agent_scrape",
        "parameters": {
            "targets": args.targets,
            "slices": args.slices,
            "reps": args.reps,
            "counts_from": args.counts_from,
        },
        "environment": c.environment(),
        **result,
    }
    path = c.write_result("agent_scrape", payload, args.output)
    print(report(result))
    print(f"result: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
