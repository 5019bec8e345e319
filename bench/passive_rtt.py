"""Passive TCP RTT (`collector.capture.tcp_rtt`) beside the sender kernel's smoothed RTT
(`ss -ti`) and tshark's `tcp.analysis.ack_rtt`, on one transfer, on the same captures.

The topology of `tests/e2e/test_tcp_rtt_netns.py`: sender -- router -- receiver in three
network namespaces, the router's way to the receiver through a token bucket (`--rate`,
20 Mbit/s), a cubic sender with a fixed send buffer, so that a steady queue of tens of
milliseconds builds in the router. Two capture points see every frame of the transfer:

- `sender-side`: the sender's own interface (tx0), before the queue;
- `receiver-side`: the receiver's interface (rx0), after the queue.

The frames each point captured while the kernel's RTT is read in steady state (from its
second reading to the last write) go both to our meter and to a pcap file that tshark reads
afterwards: the same frames, with the same kernel timestamps. Per run it reports:

- `ss`: the median of the sender's `ss -ti` rtt (its smoothed RTT) over that stretch;
- per capture point, `ours data->ack`: the mean of our samples of the sender's data timed
  by the receiver's acknowledgments, and `tshark ack_rtt`: the mean of tshark's ack_rtt on
  the receiver's ACKs in the same pcap (the same quantity by another implementation);
- per capture point, `ours round trip`: the means of the two directions added up (data by
  their ACKs, plus the other side's ACKs by their TSval's echo), the connection's round trip
  as the kernels see it, whatever side of the queue the point is on;
- the ratios ours / ss and ours / tshark.

What `ss -ti`'s rtt is: the sender's per-ACK samples (from sending the oldest segment an ACK
newly covers, at the TCP layer, to processing that ACK), smoothed by 7/8 per ACK. It includes
what happens inside the sender before its frames reach the wire and after the ACK left it,
which no capture point sees; next to the sender, `ss / ours data->ack` is that share.

    sudo .venv/bin/python -m bench.passive_rtt                    # 3 runs, IPv6, 8 MiB each
    sudo .venv/bin/python -m bench.passive_rtt --runs 1 --transfer-mib 2 --family ipv4

Needs root (namespaces, AF_PACKET) and tshark.
"""

from __future__ import annotations

import argparse
import os
import statistics
import struct
import subprocess
import tempfile
from pathlib import Path

from bench._common import environment, median, ratio, require_root, table, unwind_on_termination, write_result
from collector.capture.tcp_rtt import PassiveTcpRtt, RttSummary

POINTS = ("sender-side", "receiver-side")
QUEUE_BUILT_MS = 10.0  # the sender's smoothed RTT above which the router's queue built
PCAP_HEADER = struct.Struct("<IHHiIII")
PCAP_RECORD = struct.Struct("<IIII")
PCAP_NANOSECONDS = 0xA1B23C4D
LINKTYPE_ETHERNET = 1


class Point:
    """One capture point: every frame of the steady stretch into our meter and into a list
    for the pcap tshark reads."""

    def __init__(self, window: list[float]) -> None:
        self.meter = PassiveTcpRtt(remote_prefix_len=128, remote_prefix_len_v4=32)
        self.frames: list[tuple[int, bytes]] = []
        self._window = window

    def observe(self, ts_ns: int, frame: bytes, offset: int) -> None:
        if self._window[0] <= ts_ns <= self._window[1]:
            self.meter.observe(ts_ns, frame, offset)
            self.frames.append((ts_ns, frame))

    def write_pcap(self, path: Path) -> None:
        with path.open("wb") as out:
            out.write(PCAP_HEADER.pack(PCAP_NANOSECONDS, 2, 4, 0, 0, 65535, LINKTYPE_ETHERNET))
            for ts_ns, frame in self.frames:
                seconds, nanoseconds = divmod(ts_ns, 1_000_000_000)
                out.write(PCAP_RECORD.pack(seconds, nanoseconds, len(frame), len(frame)) + frame)


def tshark_ack_rtts(pcap: Path, port: int) -> list[float]:
    """tshark's ack_rtt (seconds) of every ACK the receiver (`port`) sent in the capture."""
    out = subprocess.run(
        ["tshark", "-n", "-r", str(pcap), "-Y", f"tcp.srcport == {port} && tcp.analysis.ack_rtt",
         "-T", "fields", "-e", "tcp.analysis.ack_rtt"],
        capture_output=True, text=True, timeout=300, check=True,
    ).stdout  # fmt: skip
    return [float(line) for line in out.split()]


def mean_ms(summary: RttSummary | None) -> float | None:
    return summary.sum_s / summary.samples * 1000 if summary and summary.samples else None


def one_run(family: str, transfer: int, rate: str, pcaps: Path, index: int) -> dict:
    from tests.capture_support import Capture
    from tests.e2e import test_tcp_rtt_netns as lab
    from tests.support import network_namespace

    window = [float("inf"), float("inf")]  # capture times, ns
    points = {name: Point(window) for name in POINTS}
    with network_namespace() as receiver, network_namespace() as router, network_namespace() as sender:
        sender_address, receiver_address = lab.wire(sender, router, receiver, family, rate)
        captures = [
            Capture(sender, "tx0", "both", points["sender-side"].observe),
            Capture(receiver, "rx0", "both", points["receiver-side"].observe),
        ]
        try:
            server, client = lab.connected_pair(sender, receiver, family, receiver_address)
            sent = lab.timed_transfer(sender, receiver_address, server, client, transfer, window)
        finally:
            dropped = [capture.stop() for capture in captures]
    received, kernel = sent.received, sent.kernel_ms
    if received != [transfer] or any(dropped) or len(kernel) < 3:
        raise SystemExit(f"run {index}: received {received}, capture drops {dropped}, {len(kernel)} ss readings")
    prefix_len = 128 if family == "ipv6" else 32
    result: dict = {
        "ss_ms": statistics.median(kernel[1:]),
        "ss_readings": len(kernel) - 1,
        "load_1m": os.getloadavg()[0],  # the machine is shared: a starved sender reads differently
        "points": {},
    }
    for name, point in points.items():
        pcap = pcaps / f"run{index}-{name}.pcap"
        point.write_pcap(pcap)
        acks = tshark_ack_rtts(pcap, lab.PORT)
        by_prefix = point.meter.report().by_prefix
        data = by_prefix.get(("best-effort", f"{receiver_address}/{prefix_len}"))  # echoed by the receiver
        echoes = by_prefix.get(("best-effort", f"{sender_address}/{prefix_len}"))  # echoed by the sender
        data_ms, echoes_ms = mean_ms(data), mean_ms(echoes)
        result["points"][name] = {
            "frames": len(point.frames),
            "ours_data_ack_ms": data_ms,
            "ours_data_ack_samples": data.samples if data else 0,
            "ours_echo_ms": echoes_ms,
            "ours_echo_samples": echoes.samples if echoes else 0,
            "ours_round_trip_ms": data_ms + echoes_ms if data_ms is not None and echoes_ms is not None else None,
            "tshark_ack_rtt_ms": statistics.fmean(acks) * 1000 if acks else None,
            "tshark_ack_rtt_samples": len(acks),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--family", choices=("ipv6", "ipv4"), default="ipv6")
    parser.add_argument("--transfer-mib", type=float, default=8.0)
    parser.add_argument("--rate", default="20mbit", help="the router's token bucket toward the receiver")
    parser.add_argument("--output")
    args = parser.parse_args()
    require_root("bench/passive_rtt.py")
    unwind_on_termination()
    transfer = int(args.transfer_mib * 1024 * 1024)
    with tempfile.TemporaryDirectory(prefix="xb-passive-rtt-") as directory:
        runs = [one_run(args.family, transfer, args.rate, Path(directory), index) for index in range(args.runs)]

    # as the netns test: a run whose queue never built (a sender short of CPU) compares
    # near-zeros; it is shown, and left out of the medians unless no run built one
    counted = [run for run in runs if run["ss_ms"] > QUEUE_BUILT_MS] or runs

    def over_runs(point: str, key: str) -> float | None:
        values = [run["points"][point][key] for run in counted if run["points"][point][key] is not None]
        return median(values) if values else None

    ss_ms = median([run["ss_ms"] for run in counted])
    rows = [["ss -ti rtt (sender's smoothed RTT)", ss_ms, None, None]]
    summary: dict = {"ss_ms": ss_ms}
    for point in POINTS:
        ours_data, tshark = over_runs(point, "ours_data_ack_ms"), over_runs(point, "tshark_ack_rtt_ms")
        round_trip = over_runs(point, "ours_round_trip_ms")
        rows.append([f"{point}: ours data->ack", ours_data, _ratio(ours_data, ss_ms), _ratio(ours_data, tshark)])
        rows.append([f"{point}: tshark ack_rtt", tshark, _ratio(tshark, ss_ms), None])
        rows.append([f"{point}: ours round trip", round_trip, _ratio(round_trip, ss_ms), None])
        summary[point] = {
            "ours_data_ack_ms": ours_data,
            "tshark_ack_rtt_ms": tshark,
            "ours_round_trip_ms": round_trip,
            "ours_data_ack_vs_tshark": _ratio(ours_data, tshark),
            "ours_round_trip_vs_ss": _ratio(round_trip, ss_ms),
            "tshark_vs_ss": _ratio(tshark, ss_ms),
        }
    print(f"{args.runs} run(s), {args.family}, {args.transfer_mib} MiB through a {args.rate} bucket, per run (ms):")
    headers = ["run", "load", "ss", *(f"{point}: {key}" for point in ("sender", "receiver") for key in RUN_COLUMNS)]
    print(table(headers, per_run_rows(runs)))
    print(f"medians over {len(counted)} of {len(runs)} runs (those whose queue built: ss above {QUEUE_BUILT_MS} ms):")
    print(table(["figure", "mean ms", "/ ss", "/ tshark"], rows))
    payload = {
        "benchmark": "passive_rtt",
        "environment": environment(),
        "parameters": vars(args),
        "runs": runs,
        "summary": summary,
        "runs_counted": [runs.index(run) for run in counted],
    }
    print(f"result: {write_result('passive_rtt', payload, args.output)}")


RUN_COLUMNS = {"data->ack": "ours_data_ack_ms", "echo": "ours_echo_ms", "tshark": "tshark_ack_rtt_ms"}


def per_run_rows(runs: list[dict]) -> list[list[object]]:
    """Each run's figures: a run whose sender was short of CPU shows a long echo at the sender
    (its answer to an ACK waited) and an ss below the queue's depth (the queue never filled)."""
    rows = []
    for index, run in enumerate(runs):
        figures = [run["points"][point][key] for point in POINTS for key in RUN_COLUMNS.values()]
        rows.append([index, run["load_1m"], run["ss_ms"], *figures])
    return rows


def _ratio(value: float | None, reference: float | None) -> float | None:
    return ratio(value, reference) if value is not None and reference else None


if __name__ == "__main__":
    main()
