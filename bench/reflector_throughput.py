#!/usr/bin/env python3
"""Reflector throughput on one core, against a plain-socket Python echo loop (the floor).

Three servers run as separate processes pinned to one CPU (`taskset -c SERVER_CPU`):
the minimal echo loop of bench/echo_floor.py, `xnetmon reflect` stateless and
`xnetmon reflect --stateful`, both without rate limits. One load generator, the C
program bench/udp_blaster.c (compiled here with gcc into a temporary directory), pinned
to the other CPU, keeps a window of valid 44-octet STAMP test packets in flight against
each server in turn and counts replies over a fixed time after a warm-up. Every
repetition measures all three, in a rotating order; the report gives the median packets/s
of each and the ratio to the echo loop (median of the per-repetition ratios).

Targets (issue 18): both reflectors >= 0.7 x the echo loop. The generator's and each
server's CPU use are recorded, so a reader can check that the server was the saturated
side. Every server and generator runs in a session of its own whose autogroup is put at
`--nice` (-20), so other tenants of a shared machine wait while it measures.

With `--scaling`, each repetition also compares one process with two on SCALING_CPUS
(target >= 1.8 x): the stateless reflector with `--workers 2` (SO_REUSEPORT), and two echo
loops sharing a port as the peer, each process pinned to its own CPU. A live generator
would take CPU from the servers on a 2-core machine, so these drain queues filled while the
servers were stopped (bench/queue_replay.py).

    sudo .venv/bin/python bench/reflector_throughput.py                  # 5 x 3 s per server
    sudo .venv/bin/python bench/reflector_throughput.py --reps 1 --seconds 0.5
    sudo .venv/bin/python bench/reflector_throughput.py --scaling --scaling-cpus 0,1
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c
import queue_replay as replay

TARGET_RATIO = 0.7
TARGET_SCALING = 1.8


def compile_blaster(workdir: str) -> str:
    gcc = shutil.which("gcc")
    if gcc is None:
        sys.exit("bench/reflector_throughput.py needs gcc to build bench/udp_blaster.c")
    binary = os.path.join(workdir, "udp_blaster")
    c.run([gcc, "-O2", "-Wall", "-o", binary, str(c.BENCH_DIR / "udp_blaster.c")], timeout=60)
    return binary


def scaling_run(address: str, workers: int, cpus: str, args) -> dict:
    """Replies/s of `workers` processes on `cpus` draining pre-filled queues (bench/queue_replay.py):
    the stateless reflector (`--workers`) beside the same number of echo loops sharing a port."""
    result: dict = {"workers": workers, "cpus": cpus}
    for name in ("stateless", "echo"):
        port = c.free_udp_port(address=address)
        if name == "stateless":
            argv = [c.XNETMON, "reflect", "--bind", address, "--port", str(port), "--rate-limit", "0"]
            started = [[*argv, "--global-rate-limit", "0", "--workers", str(workers)]]
        else:
            echo = [c.PYTHON, str(c.BENCH_DIR / "echo_floor.py"), "--bind", address, "--port", str(port)]
            started = [[*echo, "--reuse-port"] for _ in range(workers)]
        # setsid: each server in a session (an autogroup) of its own, raised above other tenants
        procs = [c.Server(["setsid", "taskset", "-c", cpus, *argv], name=f"{name} x{workers}") for argv in started]
        try:
            pids = []
            for server in procs:
                server.start()
            replay.wait_bound(port, workers)
            for server in procs:
                assert server.proc is not None
                replay.raise_priority(server.proc.pid, args.nice)
                pids += replay.process_tree(server.proc.pid)
            if len(pids) != workers:
                raise RuntimeError(f"{name}: {len(pids)} serving processes, expected {workers}")
            c.pin(pids, [int(cpu) for cpu in cpus.split(",")])
            before = sum(c.cpu_seconds(pid) for pid in pids)
            with replay.QueueReplay(address, port, pids) as queues:
                drains = [queues.cycle(args.scaling_requests) for _ in range(args.scaling_cycles)]
            spent = sum(c.cpu_seconds(pid) for pid in pids) - before
        finally:
            for server in procs:
                server.stop()
        replies = sum(d.replies for d in drains)
        result[name] = {
            "pps": round(c.median([d.pps for d in drains]), 1),
            "sent": sum(d.sent for d in drains),
            "replies": replies,
            "replies_per_server_cpu_second": round(replies / spent, 1) if spent > 0 else None,
        }
    return result


def servers(address: str, cpu: int) -> tuple[dict[str, c.Server], dict[str, int]]:
    pin = ["setsid", "taskset", "-c", str(cpu)]  # setsid: an autogroup whose priority can be raised
    ports = {}
    for name in ("echo", "stateless", "stateful"):
        ports[name] = c.free_udp_port(address=address)
    reflect = [c.XNETMON, "reflect", "--bind", address, "--rate-limit", "0", "--global-rate-limit", "0"]
    return {
        "echo": c.Server(
            [*pin, c.PYTHON, str(c.BENCH_DIR / "echo_floor.py"), "--bind", address, "--port", str(ports["echo"])],
            name="echo floor",
        ),
        "stateless": c.Server([*pin, *reflect, "--port", str(ports["stateless"])], name="reflector (stateless)"),
        "stateful": c.Server(
            [*pin, *reflect, "--port", str(ports["stateful"]), "--stateful"], name="reflector (stateful)"
        ),
    }, ports


LABELS = {
    "echo": "python echo loop (floor)",
    "stateless": "xnetmon reflect (stateless)",
    "stateful": "xnetmon reflect --stateful",
}


def blast(
    blaster: str,
    address: str,
    port: int,
    cpu: int,
    seconds: float,
    warmup: float,
    window: int,
    server_pid: int,
    nice: int,
) -> dict:
    before = c.cpu_seconds(server_pid)
    done = c.run(
        [
            "setsid",
            "sh",
            "-c",
            f'echo {nice} > /proc/self/autogroup && exec "$@"',
            "blaster",
            "taskset",
            "-c",
            str(cpu),
            blaster,
            address,
            str(port),
            "-s",
            str(seconds),
            "-W",
            str(warmup),
            "-w",
            str(window),
        ],
        timeout=seconds + warmup + 30,
    )
    after = c.cpu_seconds(server_pid)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["server_cpu_seconds"] = round(after - before, 3)
    wall = result["wall_seconds"] or 1.0
    result["server_cpu_share"] = round((after - before) / wall, 3)
    result["generator_cpu_share"] = round(result["cpu_seconds"] / wall, 3)
    # Replies per CPU-second the server spent: its cost per packet, which CPU time taken by
    # other tenants of a shared machine does not disturb as much as packets/s.
    spent = after - before
    result["replies_per_server_cpu_second"] = round(result["replies"] / spent, 1) if spent > 0 else None
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5, help="repetitions (each measures every server)")
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per server per repetition")
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds of load before measuring")
    parser.add_argument("--window", type=int, default=64, help="requests in flight")
    parser.add_argument("--address", default="::1")
    parser.add_argument("--server-cpu", type=int, default=1)
    parser.add_argument("--generator-cpu", type=int, default=0)
    parser.add_argument("--output", help="JSON result file (default: bench/results/reflector_throughput-TIME.json)")
    parser.add_argument("--scaling", action="store_true", help="also measure 2 workers against 1 (SO_REUSEPORT)")
    parser.add_argument("--scaling-cpus", default="0,1", help="CPUs of the 2-worker reflector")
    parser.add_argument("--scaling-requests", type=int, default=8000, help="requests queued per process a cycle")
    parser.add_argument("--scaling-cycles", type=int, default=15, help="drains per server per repetition")
    parser.add_argument(
        "--nice", type=int, default=-20, help="autogroup nice of every server and generator (others' work waits)"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no per-measurement lines")
    args = parser.parse_args(argv)
    if args.reps < 1 or args.seconds <= 0 or args.window < 1:
        parser.error("--reps, --seconds and --window must be positive")
    if shutil.which("taskset") is None:
        sys.exit("bench/reflector_throughput.py needs taskset (util-linux)")
    signal.signal(signal.SIGTERM, _interrupt)

    started = time.time()
    names = ["echo", "stateless", "stateful"]
    runs: list[dict] = []
    server_output = {}
    with tempfile.TemporaryDirectory(prefix="xb-blaster-") as workdir:
        blaster = compile_blaster(workdir)
        procs, ports = servers(args.address, args.server_cpu)
        try:
            for server in procs.values():
                server.start()
                assert server.proc is not None
                replay.raise_priority(server.proc.pid, args.nice)
            for rep in range(args.reps):
                order = names[rep % 3 :] + names[: rep % 3]
                entry = {"rep": rep + 1, "order": order}
                for name in order:
                    assert procs[name].proc is not None
                    entry[name] = blast(
                        blaster,
                        args.address,
                        ports[name],
                        args.generator_cpu,
                        args.seconds,
                        args.warmup,
                        args.window,
                        procs[name].proc.pid,
                        args.nice,
                    )
                if args.scaling:
                    pair = [(1, str(args.server_cpu)), (2, args.scaling_cpus)]
                    for workers, cpus in pair if rep % 2 == 0 else pair[::-1]:
                        entry[f"workers{workers}"] = scaling_run(args.address, workers, cpus, args)
                runs.append(entry)
                if not args.quiet:
                    print(
                        f"  rep {rep + 1}/{args.reps}: "
                        + ", ".join(
                            f"{n} {entry[n]['pps']:,.0f} pps (server cpu {entry[n]['server_cpu_share']:.0%}, "
                            f"generator cpu {entry[n]['generator_cpu_share']:.0%})"
                            for n in names
                        ),
                        flush=True,
                    )
        finally:
            for name, server in procs.items():
                server_output[name] = server.stop().strip().splitlines()[-1:]

    summary = {}
    for name in names:
        pps = [r[name]["pps"] for r in runs]
        ratios = [c.ratio(r[name]["pps"], r["echo"]["pps"]) for r in runs]
        ratios = [x for x in ratios if x is not None]
        summary[name] = {
            "label": LABELS[name],
            "median_pps": c.median(pps),
            "min_pps": min(pps),
            "max_pps": max(pps),
            "ratio_to_echo": c.median(ratios) if ratios else None,  # median of per-repetition ratios
            "ratio_of_medians": c.ratio(c.median(pps), c.median([r["echo"]["pps"] for r in runs])),
            "median_replies_per_cpu_second": _median_or_none([r[name]["replies_per_server_cpu_second"] for r in runs]),
            "cpu_efficiency_ratio_to_echo": _median_or_none(
                [
                    c.ratio(r[name]["replies_per_server_cpu_second"], r["echo"]["replies_per_server_cpu_second"])
                    for r in runs
                    if r[name]["replies_per_server_cpu_second"] and r["echo"]["replies_per_server_cpu_second"]
                ]
            ),
            "median_server_cpu_share": c.median([r[name]["server_cpu_share"] for r in runs]),
            "median_generator_cpu_share": c.median([r[name]["generator_cpu_share"] for r in runs]),
            "timeouts": sum(r[name]["timeouts"] for r in runs),
            # requests never answered, including the window still in flight when each run stops
            "unanswered": sum(max(0, r[name]["sent"] - r[name]["replies"]) for r in runs),
        }
    stateless = summary["stateless"]["ratio_to_echo"]
    stateful = summary["stateful"]["ratio_to_echo"]
    scaling = None
    if args.scaling:
        scaling = {name: _scaling_summary(runs, name) for name in ("stateless", "echo")}
        scaling["target"] = TARGET_SCALING
        scaling["method"] = "queues filled while the servers were stopped, then drained (bench/queue_replay.py)"
    payload = {
        "benchmark": "reflector_throughput",
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": round(time.time() - started, 1),
        "parameters": {
            "reps": args.reps,
            "seconds": args.seconds,
            "warmup_s": args.warmup,
            "window": args.window,
            "address": args.address,
            "server_cpu": args.server_cpu,
            "generator_cpu": args.generator_cpu,
            "packet_octets": 44,
            "ports": ports,
        },
        "targets": {"ratio_to_echo_min": TARGET_RATIO, "scaling_2_over_1_min": TARGET_SCALING},
        "environment": c.environment(),
        "servers": summary,
        "stateless_within_target": None if stateless is None else stateless >= TARGET_RATIO,
        "stateful_within_target": None if stateful is None else stateful >= TARGET_RATIO,
        "scaling": scaling,
        "runs": runs,
        "server_stats": server_output,
    }
    out = c.write_result("reflector_throughput", payload, args.output)
    print()
    print(render(payload))
    print(f"\nresults: {out}")
    return 0


def render(payload: dict) -> str:
    p = payload["parameters"]
    head = (
        f"Reflector throughput, server pinned to CPU {p['server_cpu']}, generator to CPU {p['generator_cpu']}: "
        f"{p['reps']} reps x {p['seconds']:g} s (after {p['warmup_s']:g} s warm-up), window {p['window']}, "
        f"{p['packet_octets']}-octet STAMP requests to {p['address']}"
    )
    rows = []
    for name, s in payload["servers"].items():
        verdict = "-"
        if name != "echo" and s["ratio_to_echo"] is not None:
            verdict = "met" if s["ratio_to_echo"] >= TARGET_RATIO else "MISSED"
        rows.append(
            [
                s["label"],
                s["median_pps"],
                s["min_pps"],
                s["max_pps"],
                s["ratio_to_echo"],
                s["median_replies_per_cpu_second"],
                s["cpu_efficiency_ratio_to_echo"],
                f"{s['median_server_cpu_share']:.0%}",
                f"{s['median_generator_cpu_share']:.0%}",
                s["timeouts"],
                verdict,
            ]
        )
    body = c.table(
        [
            "server",
            "median pps",
            "min pps",
            "max pps",
            "x echo",
            "per cpu-s",
            "x echo/cpu",
            "server cpu",
            "gen cpu",
            "stalls",
            f">={TARGET_RATIO:g}",
        ],
        rows,
    )
    note = (
        "x echo: median over repetitions of (server pps / echo pps in the same repetition);\n"
        "per cpu-s: replies per CPU-second the server used (its cost per packet, less disturbed by other\n"
        "load on a shared machine); x echo/cpu: the same as a ratio to the echo loop, per repetition;\n"
        "server cpu / gen cpu: CPU time over wall time during the measurement (1 CPU = 100%);\n"
        "stalls: times the whole window went unanswered for 20 ms (drops) and was sent again."
    )
    text = f"{head}\n\n{body}\n\n{note}"
    scaling = payload.get("scaling")
    if scaling:
        rows = [
            [
                label,
                s["median_pps_1"],
                s["median_pps_2"],
                s["ratio"],
                s["median_replies_per_cpu_second_1"],
                s["median_replies_per_cpu_second_2"],
                "-" if name == "echo" else ("met" if s["ratio"] >= TARGET_SCALING else "MISSED"),
            ]
            for name, label in (("stateless", LABELS["stateless"]), ("echo", "python echo loops (SO_REUSEPORT)"))
            for s in [scaling[name]]
        ]
        heads = ["server", "1 process pps", "2 processes pps", "x 2/1", "per cpu-s 1", "per cpu-s 2"]
        text += "\n\nScaling across cores: " + scaling["method"] + "\n\n"
        text += c.table([*heads, f">={TARGET_SCALING:g}"], rows)
    return text


def _scaling_summary(runs: list[dict], name: str) -> dict:
    one = [r["workers1"][name]["pps"] for r in runs]
    two = [r["workers2"][name]["pps"] for r in runs]
    return {
        "median_pps_1": c.median(one),
        "median_pps_2": c.median(two),
        "ratio": _median_or_none([c.ratio(b, a) for a, b in zip(one, two, strict=True)]) or 0.0,
        **{
            f"median_replies_per_cpu_second_{n}": _median_or_none(
                [r[f"workers{n}"][name]["replies_per_server_cpu_second"] for r in runs]
            )
            for n in (1, 2)
        },
    }


def _median_or_none(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return c.median(values) if values else None


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
