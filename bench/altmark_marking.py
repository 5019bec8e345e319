#!/usr/bin/env python3
"""What the ingress marker costs: forwarding latency added, and packets lost at business rates.

    sudo .venv/bin/python -m bench.altmark_marking                  # 5 rounds x 500 echoes, 2 s at 1,000 pps
    sudo .venv/bin/python -m bench.altmark_marking --rounds 9 --count 2000 --rate 5000

Two namespaces joined by a veth; `bench/echo_floor.py` answers UDP in the second; the first
runs the marker (`collector.capture.altmark_ingress`) on DSCP 34 only. A client in the first
sends echo requests from two sockets, alternately: DSCP 34 (queued, marked, reinjected) and
DSCP 0 (the unmarked path, the peer), each waiting for its answer. The marker's cost is
median RTT marked - median RTT unmarked (the answers are never queued). Then the client
sends `--rate` packets/s of DSCP 34 for `--seconds`: every one must come out marked (the
marker's count), none dropped by the queue (the kernel's counters) and every answer back.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
import uuid

from bench._common import (
    NamespacePair,
    Server,
    environment,
    in_namespace,
    median,
    percentile,
    require_root,
    run,
    table,
    write_result,
)

ADDR_A, ADDR_B = "fd00:be:7::1", "fd00:be:7::2"
ECHO_PORT = 5004
MARKED_DSCP = 34
QUEUE = 11


def client(address: str, count: int, rate: float, seconds: float) -> dict:
    """Runs inside the first namespace (`--client`): ping-pong RTTs per DSCP, then a paced run."""
    sockets = {}
    for dscp in (MARKED_DSCP, 0):
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, dscp << 2)
        sock.settimeout(1.0)
        sock.connect((address, ECHO_PORT))
        sockets[dscp] = sock
    rtts: dict[int, list[int]] = {MARKED_DSCP: [], 0: []}
    lost = {MARKED_DSCP: 0, 0: 0}
    payload = bytes(64)
    for i in range(2 * count):
        dscp = MARKED_DSCP if i % 2 == 0 else 0
        sock = sockets[dscp]
        start = time.perf_counter_ns()
        sock.send(payload)
        try:
            sock.recv(2048)
        except TimeoutError:
            lost[dscp] += 1
            continue
        rtts[dscp].append(time.perf_counter_ns() - start)
    sock = sockets[MARKED_DSCP]
    sock.settimeout(0.0)
    sent = answered = 0
    begin = time.monotonic()
    total = int(rate * seconds)
    while sent < total:
        due = begin + sent / rate
        while time.monotonic() < due:
            try:
                sock.recv(2048)
                answered += 1
            except BlockingIOError:
                pass
        sock.send(payload)
        sent += 1
    sock.settimeout(1.0)
    try:
        while answered < sent:
            sock.recv(2048)
            answered += 1
    except TimeoutError:
        pass
    return {"rtt_ns": {str(k): v for k, v in rtts.items()}, "lost": lost, "rate_sent": sent, "rate_answered": answered}


def one_round(pair: NamespacePair, count: int, rate: float, seconds: float) -> dict:
    echo_argv = in_namespace(pair.ns_b, sys.executable, "bench/echo_floor.py", "--bind", "::", "--port", str(ECHO_PORT))
    echo = Server(echo_argv)
    marker = Server(
        in_namespace(
            pair.ns_a, sys.executable, "-m", "collector.capture.altmark_ingress", "--queue", str(QUEUE),
            "--site-index", "1", "--dscp", str(MARKED_DSCP), "--protocol", "udp", "--install-rule",
        ),
        ready='"ready"',
        name="marker",
    )  # fmt: skip
    with echo, marker:
        done = run(
            in_namespace(
                pair.ns_a, sys.executable, "-m", "bench.altmark_marking", "--client", ADDR_B,
                "--count", str(count), "--rate", str(rate), "--seconds", str(seconds),
            ),
            timeout=120 + 3 * seconds,
        )  # fmt: skip
        measured = json.loads(done.stdout)
        report_lines = [line for line in marker.stop().splitlines() if '"marked"' in line]
    report = json.loads(report_lines[-1])
    marked, unmarked = measured["rtt_ns"][str(MARKED_DSCP)], measured["rtt_ns"]["0"]
    return {
        "marked_median_us": median(marked) / 1e3,
        "unmarked_median_us": median(unmarked) / 1e3,
        "added_median_us": (median(marked) - median(unmarked)) / 1e3,
        "marked_p99_us": percentile(marked, 99) / 1e3,
        "unmarked_p99_us": percentile(unmarked, 99) / 1e3,
        "echo_lost": measured["lost"],
        "rate_sent": measured["rate_sent"],
        "rate_answered": measured["rate_answered"],
        "marker": {k: report[k] for k in ("marked", "skipped", "kernel_queue_dropped", "kernel_user_dropped")},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--count", type=int, default=500, help="echoes per DSCP per round")
    parser.add_argument("--rate", type=float, default=1000.0, help="packets/s of the paced run")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of the paced run")
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--output")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.client:
        print(json.dumps(client(args.client, args.count, args.rate, args.seconds)))
        return 0
    require_root("bench.altmark_marking")
    tag = uuid.uuid4().hex[:6]
    rounds = []
    with NamespacePair(f"xb-a-{tag}", f"xb-b-{tag}", f"xb-a{tag}", f"xb-b{tag}", ADDR_A, ADDR_B) as pair:
        for _ in range(args.rounds):
            rounds.append(one_round(pair, args.count, args.rate, args.seconds))
    summary = {
        "added_median_us": median([r["added_median_us"] for r in rounds]),
        "marked_median_us": median([r["marked_median_us"] for r in rounds]),
        "unmarked_median_us": median([r["unmarked_median_us"] for r in rounds]),
        "ratio_marked_unmarked": median([r["marked_median_us"] / r["unmarked_median_us"] for r in rounds]),
        "rate_pps": args.rate,
        "rate_sent": sum(r["rate_sent"] for r in rounds),
        # the marker also marked the latency phase's DSCP 34 echoes
        "rate_marked": sum(r["marker"]["marked"] for r in rounds) - args.count * args.rounds,
        "rate_lost": sum(r["rate_sent"] - r["rate_answered"] for r in rounds),
        "queue_dropped": sum((r["marker"]["kernel_queue_dropped"] or 0) for r in rounds),
    }
    path = write_result(
        "altmark_marking",
        {"benchmark": "altmark_marking", "environment": environment(), "summary": summary, "rounds": rounds},
        args.output,
    )
    if not args.quiet:
        print(
            table(
                ["path", "median RTT us"],
                [
                    ["unmarked (DSCP 0)", summary["unmarked_median_us"]],
                    ["marked (DSCP 34, NFQUEUE)", summary["marked_median_us"]],
                ],
            )
        )
        print(
            f"added by the marker: median {summary['added_median_us']:.1f} us "
            f"(ratio marked/unmarked {summary['ratio_marked_unmarked']:.2f}); "
            f"at {args.rate:.0f} pps: {summary['rate_sent']} sent, {summary['rate_marked']} marked, "
            f"{summary['rate_lost']} lost, {summary['queue_dropped']} dropped by the queue"
        )
        print(f"result: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
