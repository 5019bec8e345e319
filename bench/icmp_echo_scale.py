#!/usr/bin/env python3
"""Echo prober at scale: 1,000 targets at one probe per second each, from one process,
side by side with fping over the same targets in the same run.

Targets are TARGETS addresses (fd00:cafe::1 upwards) on the loopback of namespace
xb-echo-t-PID, reached from namespace xb-echo-s-PID over a veth pair; both namespaces are
created here and removed at the end, even on error. In each repetition both tools run
one after the other (who goes first alternates) for COUNT probes per target at INTERVAL:

- ours: `EchoProber` (one raw ICMPv6 socket for every target), in a child process;
- fping: `fping -6 -C COUNT -p INTERVAL_MS -i GAP_MS -q`, where GAP_MS = INTERVAL_MS / TARGETS
  spreads the probes evenly like ours does (fping's default 10 ms gap could not reach
  1,000 targets per second). `-C` is the counted form of `fping -6 -l -p 1000`: the same
  schedule, with every RTT printed at the end.

Measured per tool and repetition: CPU seconds (user + system, from wait4 on the child)
per 1,000 probes sent, and the self-induced RTT spread p99 - p50 over the RTTs of all
targets. The report gives the medians over repetitions and the ratios ours / fping.
Goals are judged on the ratios, never on absolute times (see bench/README.md).

    sudo .venv/bin/python bench/icmp_echo_scale.py                 # 1,000 targets, 30 s, 3 repetitions
    sudo .venv/bin/python bench/icmp_echo_scale.py --targets 20 --count 2 --interval 0.2 --reps 1

Needs root: namespaces, and fping's sub-10 ms gaps.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c

TARGET_PREFIX = "fd00:cafe::"
LINK_S, LINK_T = "fd00:ec0::1", "fd00:ec0::2"
_FPING_LINE = re.compile(r"^(\S+)\s+:\s+(.*)$")


# -- the two namespaces --------------------------------------------------------------------


class EchoTestbed(c.NamespacePair):
    """xb-echo-s-TAG (the prober) and xb-echo-t-TAG (the targets on its loopback), joined by a veth pair."""

    def __init__(self, targets: int, tag: str) -> None:
        super().__init__(f"xb-echo-s-{tag}", f"xb-echo-t-{tag}", f"xbes{tag}", f"xbet{tag}", LINK_S, LINK_T)
        self.source_ns, self.target_ns = self.ns_a, self.ns_b
        self.addresses = [f"{TARGET_PREFIX}{i:x}" for i in range(1, targets + 1)]

    def configure(self) -> None:
        c.add_loopback_addresses(self.target_ns, self.addresses)
        c.ip("-n", self.source_ns, "route", "add", f"{TARGET_PREFIX}/64", "via", LINK_T)
        # Echo replies are not rate limited by default; errors would be. Keep both free.
        c.set_sysctl(self.target_ns, "net.ipv6.icmp.ratelimit=0")

    @property
    def reach_address(self) -> str:
        return self.addresses[-1]


# -- running one tool ------------------------------------------------------------------------


def _measured(argv: list[str], timeout: float) -> tuple[str, str, float]:
    """Run a child to completion: (stdout, stderr, CPU seconds it used, from wait4)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, text=True)
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                os.wait4(proc.pid, 0)
                raise RuntimeError(f"{' '.join(argv[:6])} ... did not finish in {timeout:.0f} s")
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0 and not stdout.strip():
        raise RuntimeError(f"{' '.join(argv[:6])} ... exited {proc.returncode}: {stderr[-2000:]}")
    return stdout, stderr, usage.ru_utime + usage.ru_stime


def run_ours(bed: EchoTestbed, targets_file: Path, count: int, interval: float) -> dict:
    argv = [
        "ip",
        "netns",
        "exec",
        bed.source_ns,
        c.PYTHON,
        str(Path(__file__).resolve()),
        "--child",
        "--targets-file",
        str(targets_file),
        "--count",
        str(count),
        "--interval",
        str(interval),
    ]
    stdout, _stderr, cpu = _measured(argv, timeout=count * interval + 60)
    child = json.loads(stdout)
    return _describe(child["rtts_ns"], child["sent"], cpu) | {
        "cpu_probing_s": child["cpu_probing_s"],
        "socket": child["socket"],
    }


def run_fping(bed: EchoTestbed, targets_file: Path, count: int, interval: float) -> dict:
    period_ms = interval * 1000
    gap_ms = period_ms / len(bed.addresses)
    argv = [
        "ip",
        "netns",
        "exec",
        bed.source_ns,
        "fping",
        "-6",
        "-q",
        "-C",
        str(count),
        "-p",
        f"{period_ms:g}",
        "-i",
        f"{gap_ms:g}",
        "-f",
        str(targets_file),
    ]
    _stdout, stderr, cpu = _measured(argv, timeout=count * interval + 60)
    rtts: list[int] = []
    answered_targets = 0
    for line in stderr.splitlines():
        match = _FPING_LINE.match(line.strip())
        if not match:
            continue
        answered_targets += 1
        rtts += [int(float(v) * 1e6) for v in match.group(2).split() if v != "-"]
    if answered_targets != len(bed.addresses):
        raise RuntimeError(f"fping reported {answered_targets} of {len(bed.addresses)} targets: {stderr[-1000:]}")
    return _describe(rtts, count * len(bed.addresses), cpu)


def _describe(rtts_ns: list[int], sent: int, cpu_s: float) -> dict:
    rtts_us = [v / 1000 for v in rtts_ns]
    p50 = c.percentile(rtts_us, 50) if rtts_us else None
    p99 = c.percentile(rtts_us, 99) if rtts_us else None
    return {
        "sent": sent,
        "received": len(rtts_us),
        "cpu_s": round(cpu_s, 4),
        "cpu_s_per_1000_probes": cpu_s / sent * 1000 if sent else None,
        "p50_us": p50,
        "p99_us": p99,
        "spread_us": (p99 - p50) if rtts_us else None,
    }


# -- the child that runs our prober --------------------------------------------------------


def child(targets_file: Path, count: int, interval: float) -> int:
    import resource

    from collector.probes.icmp import EchoProber, EchoSettings
    from collector.probes.icmp_session import EchoTarget

    addresses = targets_file.read_text().split()
    targets = [EchoTarget(a, a) for a in addresses]

    async def probe(prober: EchoProber) -> list[int]:
        return [r.rtt_ns async for r in prober.run(count, interval) if r.rtt_ns is not None and not r.duplicate]

    with EchoProber(EchoSettings(timeout_ns=2_000_000_000), targets) as prober:
        before = resource.getrusage(resource.RUSAGE_SELF)
        rtts = asyncio.run(probe(prober))
        after = resource.getrusage(resource.RUSAGE_SELF)
        socket_kind = prober.socket_kind.value
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    print(json.dumps({"sent": count * len(targets), "rtts_ns": rtts, "cpu_probing_s": cpu, "socket": socket_kind}))
    return 0


# -- the benchmark ---------------------------------------------------------------------------


def measure(targets: int, count: int, interval: float, reps: int, verbose: bool) -> dict:
    runs = []
    with EchoTestbed(targets, str(os.getpid())) as bed, tempfile.TemporaryDirectory() as tmp:
        targets_file = Path(tmp) / "targets"
        targets_file.write_text("\n".join(bed.addresses) + "\n")
        for rep in range(reps):
            order = ["xnetmon", "fping"] if rep % 2 == 0 else ["fping", "xnetmon"]
            run: dict = {"order": order}
            for tool in order:
                run[tool] = (run_ours if tool == "xnetmon" else run_fping)(bed, targets_file, count, interval)
                if verbose:
                    r = run[tool]
                    print(
                        f"rep {rep + 1} {tool:8s} {r['received']}/{r['sent']} replies, "
                        f"{r['cpu_s_per_1000_probes']:.3f} CPU s per 1,000 probes, "
                        f"p50 {_us(r['p50_us'])} us, p99-p50 {_us(r['spread_us'])} us",
                        flush=True,
                    )
            runs.append(run)
        namespaces = [bed.source_ns, bed.target_ns]
    tools = {}
    for tool in ("xnetmon", "fping"):
        tools[tool] = {
            "median_cpu_s_per_1000_probes": c.median([r[tool]["cpu_s_per_1000_probes"] for r in runs]),
            "median_spread_us": c.median([r[tool]["spread_us"] for r in runs if r[tool]["spread_us"] is not None]),
            "median_p50_us": c.median([r[tool]["p50_us"] for r in runs if r[tool]["p50_us"] is not None]),
            "median_received_ratio": c.median([r[tool]["received"] / r[tool]["sent"] for r in runs]),
        }
    tools["xnetmon"]["median_cpu_probing_s_per_1000_probes"] = c.median(
        [r["xnetmon"]["cpu_probing_s"] / r["xnetmon"]["sent"] * 1000 for r in runs]
    )
    return {
        "runs": runs,
        "tools": tools,
        "ratios": {
            "cpu_per_probe": c.ratio(
                tools["xnetmon"]["median_cpu_s_per_1000_probes"], tools["fping"]["median_cpu_s_per_1000_probes"]
            ),
            "rtt_spread": c.ratio(tools["xnetmon"]["median_spread_us"], tools["fping"]["median_spread_us"]),
        },
        "namespaces": namespaces,
    }


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--count", type=int, default=30, help="probes per target per tool and repetition")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between probes to one target")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--output", help="result file (default bench/results/icmp_echo_scale-TIME.json)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no per-repetition lines")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--targets-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        sys.path.insert(0, str(c.REPO))
        return child(args.targets_file, args.count, args.interval)
    c.require_root("bench/icmp_echo_scale.py")
    if not 1 <= args.targets <= 65535:
        parser.error("--targets must be in 1..65535")
    env = c.environment()
    result = measure(args.targets, args.count, args.interval, args.reps, not args.quiet)
    payload = {
        "benchmark": "icmp_echo_scale",
        "parameters": {"targets": args.targets, "count": args.count, "interval_s": args.interval, "reps": args.reps},
        "environment": env,
        **result,
    }
    path = c.write_result("icmp_echo_scale", payload, args.output)
    x, f = result["tools"]["xnetmon"], result["tools"]["fping"]
    print(
        c.table(
            ["tool", "CPU s / 1,000 probes", "p50 us", "p99-p50 us", "received"],
            [
                [
                    "xnetmon",
                    x["median_cpu_s_per_1000_probes"],
                    x["median_p50_us"],
                    x["median_spread_us"],
                    f"{x['median_received_ratio']:.1%}",
                ],
                [
                    "fping",
                    f["median_cpu_s_per_1000_probes"],
                    f["median_p50_us"],
                    f["median_spread_us"],
                    f"{f['median_received_ratio']:.1%}",
                ],
            ],
        )
    )
    ratios = result["ratios"]
    print(
        f"ratios xnetmon/fping: CPU per probe {_ratio(ratios['cpu_per_probe'])}, "
        f"RTT spread {_ratio(ratios['rtt_spread'])} (medians of {args.reps} repetitions)"
    )
    print(f"result: {path}")
    return 0


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


if __name__ == "__main__":
    sys.exit(main())
