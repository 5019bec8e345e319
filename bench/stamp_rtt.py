#!/usr/bin/env python3
"""RTT accuracy: our STAMP sender + reflector against iputils `ping -6`, side by side.

For each path (loopback ::1, and a veth pair between two network namespaces) the run starts
our reflector, then plays interleaved rounds: in every round both tools send COUNT probes
at the same interval to the same address, one after the other, and the tool that goes first
alternates from round to round. Per round it takes each tool's median RTT and its p99-p50
spread; the report gives the medians over rounds, the spread over all samples, our median
minus ping's in microseconds and the ratio of the spreads.

Targets (from the project's performance goals, judged on the comparison, never on an
absolute time): our median within 20 us of ping's, our p99-p50 spread no wider than ping's.

    sudo .venv/bin/python bench/stamp_rtt.py                      # 5 rounds x 200 probes, 10 ms
    sudo .venv/bin/python bench/stamp_rtt.py --rounds 1 --count 20 --paths loopback

Needs root: namespaces, and ping intervals below 0.2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c

TARGET_MEDIAN_DIFF_US = 20.0
TARGET_SPREAD_RATIO = 1.0
PING = "ping"
_PING_TIME = re.compile(r"\btime=([0-9.]+) ms")


# -- paths ----------------------------------------------------------------------------------


@dataclass
class Path_:
    name: str
    target: str
    reflector_bind: str
    port: int
    sender_prefix: list[str] = field(default_factory=list)  # e.g. ["ip", "netns", "exec", NS]
    reflector_prefix: list[str] = field(default_factory=list)
    description: str = ""
    namespaces: list[str] = field(default_factory=list)


class VethPair(c.NamespacePair):
    """Two namespaces joined by a veth pair with ULA addresses; removed on exit, even on error."""

    def __init__(self, tag: str, net: str = "fd00:beef::") -> None:
        super().__init__(f"xb-rtt-{tag}-a", f"xb-rtt-{tag}-b", f"xbr{tag}a", f"xbr{tag}b", f"{net}1", f"{net}2")


# -- the two tools --------------------------------------------------------------------------


def run_ours(path: Path_, count: int, interval: float) -> dict:
    argv = [
        *path.sender_prefix,
        c.XNETMON,
        "probe",
        "stamp",
        path.target,
        "-p",
        str(path.port),
        "-c",
        str(count),
        "-i",
        str(interval),
        "-W",
        "1",
        "--json",
    ]
    done = c.run(argv, timeout=count * interval + 60)
    rtts, summary = [], {}
    for line in done.stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        obj = json.loads(line)
        if "summary" in obj:
            summary = obj["summary"]
        elif obj.get("rtt_ns") is not None and not obj.get("duplicate"):
            rtts.append(obj["rtt_ns"] / 1000.0)
    return {"rtt_us": rtts, "sent": summary.get("sent", count), "said": _last_words(done)}


def run_ping(path: Path_, count: int, interval: float) -> dict:
    argv = [*path.sender_prefix, PING, "-6", "-n", "-i", str(interval), "-c", str(count), "-W", "1", path.target]
    done = c.run(argv, timeout=count * interval + 60, check=False)
    if done.returncode not in (0, 1):  # 1: some replies missing, still a measurement
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
    rtts = []
    for line in done.stdout.splitlines():
        if "DUP!" in line:
            continue
        match = _PING_TIME.search(line)
        if match:
            rtts.append(float(match.group(1)) * 1000.0)
    return {"rtt_us": rtts, "sent": count, "said": _last_words(done)}


def _last_words(done: subprocess.CompletedProcess) -> str:
    """A tool's closing lines (its summary, its errors), kept with a round that lost replies."""
    return "\n".join((done.stdout.strip().splitlines() + done.stderr.strip().splitlines())[-4:])


TOOLS = {"xnetmon": run_ours, "ping": run_ping}


def describe(rtts: list[float], sent: int) -> dict:
    if not rtts:
        return {"n": 0, "lost": sent, "p50_us": None, "p99_us": None, "spread_us": None, "min_us": None}
    p50, p99 = c.median(rtts), c.percentile(rtts, 99)
    return {
        "n": len(rtts),
        "lost": max(0, sent - len(rtts)),
        "min_us": min(rtts),
        "p50_us": p50,
        "p99_us": p99,
        "spread_us": p99 - p50,
    }


# -- one path -------------------------------------------------------------------------------


def measure_path(path: Path_, rounds: int, count: int, interval: float, verbose: bool) -> dict:
    reflector = c.Server(
        [
            *path.reflector_prefix,
            c.XNETMON,
            "reflect",
            "--bind",
            path.reflector_bind,
            "--port",
            str(path.port),
            "--rate-limit",
            "0",
        ],
        name="reflector",
    )
    per_round = []
    samples: dict[str, list[float]] = {name: [] for name in TOOLS}
    with reflector:
        # Warm-up: neighbour discovery, page cache, interpreter start-up paths.
        run_ours(path, 5, interval)
        run_ping(path, 5, interval)
        for r in range(rounds):
            order = list(TOOLS) if r % 2 == 0 else list(reversed(TOOLS))
            entry = {"round": r + 1, "order": order}
            for name in order:
                got = TOOLS[name](path, count, interval)
                samples[name].extend(got["rtt_us"])
                entry[name] = describe(got["rtt_us"], got["sent"])
                if entry[name]["lost"]:
                    entry[name]["said"] = got["said"]
            per_round.append(entry)
            if verbose:
                print(
                    f"  {path.name} round {r + 1}/{rounds} ({' first, '.join(order)} second): "
                    + ", ".join(
                        f"{n} p50 {_fmt(entry[n]['p50_us'])} us p99-p50 {_fmt(entry[n]['spread_us'])} us" for n in TOOLS
                    ),
                    flush=True,
                )
    reflector_stats = reflector.output.strip().splitlines()[-1:] if reflector.output else []
    return summarise(path, per_round, samples, reflector_stats)


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def summarise(path: Path_, per_round: list[dict], samples: dict[str, list[float]], reflector_stats: list[str]) -> dict:
    tools = {}
    for name in TOOLS:
        medians = [e[name]["p50_us"] for e in per_round if e[name]["p50_us"] is not None]
        spreads = [e[name]["spread_us"] for e in per_round if e[name]["spread_us"] is not None]
        pooled = describe(samples[name], sum(e[name]["n"] + e[name]["lost"] for e in per_round))
        tools[name] = {
            "median_us": c.median(medians) if medians else None,  # median over rounds of round medians
            "spread_us": pooled["spread_us"],  # p99-p50 over every sample of the run
            "round_spread_median_us": c.median(spreads) if spreads else None,
            "pooled": pooled,
        }
    diffs = [
        e["xnetmon"]["p50_us"] - e["ping"]["p50_us"]
        for e in per_round
        if e["xnetmon"]["p50_us"] is not None and e["ping"]["p50_us"] is not None
    ]
    ours, ping = tools["xnetmon"], tools["ping"]
    median_diff = c.median(diffs) if diffs else None
    spread_ratio = c.ratio(ours["spread_us"], ping["spread_us"]) if ours["spread_us"] is not None else None
    median_ratio = c.ratio(ours["median_us"], ping["median_us"]) if ours["median_us"] is not None else None
    return {
        "path": path.name,
        "description": path.description,
        "target": path.target,
        "port": path.port,
        "namespaces": path.namespaces,
        "tools": tools,
        "comparison": {
            "median_diff_us": median_diff,  # median over rounds of (ours - ping)
            "median_ratio": median_ratio,
            "spread_diff_us": (ours["spread_us"] - ping["spread_us"]) if spread_ratio is not None else None,
            "spread_ratio": spread_ratio,
            "median_within_target": None if median_diff is None else abs(median_diff) <= TARGET_MEDIAN_DIFF_US,
            "spread_within_target": None if spread_ratio is None else spread_ratio <= TARGET_SPREAD_RATIO,
        },
        "rounds": per_round,
        "reflector_stats": reflector_stats,
    }


# -- main -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--count", type=int, default=200, help="probes per tool per round")
    parser.add_argument("--interval", type=float, default=0.01, help="seconds between probes (both tools)")
    parser.add_argument("--paths", default="loopback,veth", help="comma-separated: loopback, veth")
    parser.add_argument("--port", type=int, default=8620, help="reflector port on the veth path")
    parser.add_argument("--output", help="JSON result file (default: bench/results/stamp_rtt-TIME.json)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no per-round lines")
    args = parser.parse_args(argv)
    c.require_root("bench/stamp_rtt.py")
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    unknown = set(paths) - {"loopback", "veth"}
    if unknown or args.rounds < 1 or args.count < 2:
        parser.error(f"bad --paths {sorted(unknown)} / --rounds / --count")

    # SIGTERM unwinds like Ctrl-C, so namespaces and the reflector are always removed.
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.time()
    results = []
    for name in paths:
        if name == "loopback":
            path = Path_("loopback", "::1", "::1", c.free_udp_port(), description="::1 in the root namespace")
            results.append(measure_path(path, args.rounds, args.count, args.interval, not args.quiet))
        else:
            with VethPair(str(os.getpid())) as veth:
                path = Path_(
                    "veth",
                    veth.addr_b,
                    veth.addr_b,
                    args.port,
                    sender_prefix=["ip", "netns", "exec", veth.ns_a],
                    reflector_prefix=["ip", "netns", "exec", veth.ns_b],
                    description=f"veth between namespaces {veth.ns_a} and {veth.ns_b}",
                    namespaces=[veth.ns_a, veth.ns_b],
                )
                results.append(measure_path(path, args.rounds, args.count, args.interval, not args.quiet))

    payload = {
        "benchmark": "stamp_rtt",
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": round(time.time() - started, 1),
        "parameters": {"rounds": args.rounds, "count": args.count, "interval_s": args.interval, "paths": paths},
        "targets": {"median_diff_us_max": TARGET_MEDIAN_DIFF_US, "spread_ratio_max": TARGET_SPREAD_RATIO},
        "environment": c.environment(),
        "paths": results,
    }
    out = c.write_result("stamp_rtt", payload, args.output)
    print()
    print(render(payload))
    print(f"\nresults: {out}")
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def render(payload: dict) -> str:
    p = payload["parameters"]
    head = (
        f"STAMP RTT vs ping -6: {p['rounds']} rounds x {p['count']} probes at {p['interval_s'] * 1000:g} ms, "
        f"tools alternate going first"
    )
    rows = []
    for r in payload["paths"]:
        for name in TOOLS:
            t = r["tools"][name]
            rows.append(
                [
                    r["path"],
                    name,
                    t["median_us"],
                    t["pooled"]["p99_us"],
                    t["spread_us"],
                    t["round_spread_median_us"],
                    t["pooled"]["lost"],
                ]
            )
    tools_table = c.table(["path", "tool", "median us", "p99 us", "p99-p50 us", "p99-p50/round", "lost"], rows)
    rows = []
    for r in payload["paths"]:
        cmp = r["comparison"]
        rows.append(
            [
                r["path"],
                cmp["median_diff_us"],
                cmp["median_ratio"],
                cmp["spread_diff_us"],
                cmp["spread_ratio"],
                _verdict(cmp["median_within_target"]),
                _verdict(cmp["spread_within_target"]),
            ]
        )
    cmp_table = c.table(
        [
            "path",
            "ours-ping us",
            "median ratio",
            "spread diff us",
            "spread ratio",
            f"|diff|<={TARGET_MEDIAN_DIFF_US:g}us",
            "spread<=ping",
        ],
        rows,
    )
    note = (
        "median: median over rounds of each round's median; p99, p99-p50: over every sample of the run;\n"
        "p99-p50/round: median over rounds of each round's spread; ours-ping: median over rounds of the\n"
        "difference of round medians; ratios are ours/ping."
    )
    return f"{head}\n\n{tools_table}\n\n{cmp_table}\n\n{note}"


def _verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("met" if ok else "MISSED")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
