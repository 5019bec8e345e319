"""IPFIX records decoded per second on one core: ours beside the python `netflow` package and
nfdump's nfcapd, on the same capture, in the same run.

The capture: `--datagrams` IPFIX messages of `--records` flow records each (the softflowd
IPv6 template plus ipDiffServCodePoint and flowLabelIPv6; the template in the first
message), with addresses, ports, DSCPs and counters varying from record to record.

- ours, decode: `collector.flow_export.ipfix.decode_ipfix` over every message (bytes -> flow
  columns with every field normalised), CPU time of this process;
- ours, receiver: `FlowReceiver.handle_datagram`, i.e. decode plus slice classification,
  per-slice counters and top talkers;
- netflow: `netflow.utils.parse_packet` (the package's own IPFIX parser, one dict per
  record with every field), CPU time of this process;
- nfcapd: the datagrams sent over UDP on loopback to a running nfcapd, its CPU time
  (utime + stime from /proc/PID/stat) while it decodes and stores them; the records it
  stored are counted afterwards with nfdump. It includes receiving from a socket and
  writing its file, which the in-process decoders do not do. The capture is sent
  `--nfcapd-repeat` times (10), because the kernel counts CPU time in 10 ms ticks.

Each Python decoder runs `--rounds` times, interleaved; medians and ratios are reported.

    .venv/bin/python bench/ipfix_decode.py [--datagrams 2000] [--records 25] [--rounds 5]
"""

from __future__ import annotations

import argparse
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, cpu_seconds, environment, free_udp_port, median, ratio, table, write_result

sys.path.insert(0, str(REPO))

from collector.flow_export.export_state import ExportState
from collector.flow_export.ipfix import decode_ipfix
from collector.flow_export.receiver import FlowReceiver
from collector.flow_export.sampling import SamplingTable
from collector.flow_export.templates import TemplateCache

# (element, length): softflowd's IPv6 template with DSCP and flow label added
FIELDS = [
    (27, 16),
    (28, 16),
    (22, 4),
    (21, 4),
    (1, 4),
    (2, 4),
    (10, 4),
    (14, 4),
    (61, 1),
    (136, 1),
    (7, 2),
    (11, 2),
    (4, 1),
    (6, 1),
    (195, 1),
    (31, 4),
]
RECORD = struct.Struct("!16s16sIIIIIIBBHHBBBI")
DSCPS = (34, 26, 18, 0, 46)
SOURCE_PREFIX = bytes.fromhex("20010db8ff00")  # 2001:db8:ff00::/48
DESTINATION_PREFIX = bytes.fromhex("20010db80000")  # 2001:db8::/32, a slice in the next octet


def build_capture(datagrams: int, records: int, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    template = struct.pack("!HH", 256, len(FIELDS)) + b"".join(struct.pack("!HH", e, n) for e, n in FIELDS)
    template_set = struct.pack("!HH", 2, 4 + len(template)) + template
    messages = []
    for index in range(datagrams):
        body = b"".join(
            RECORD.pack(
                SOURCE_PREFIX + rng.randbytes(10),
                DESTINATION_PREFIX + bytes([rng.randrange(1, 5)]) + rng.randbytes(9),
                1000,
                2000,
                rng.randrange(40, 10**6),
                rng.randrange(1, 1000),
                1,
                2,
                0,
                1,
                rng.randrange(1024, 65535),
                443,
                rng.choice((6, 17)),
                0x10,
                rng.choice(DSCPS),
                rng.randrange(1 << 20),
            )
            for _ in range(records)
        )
        sets = (template_set if index == 0 else b"") + struct.pack("!HH", 256, 4 + len(body)) + body
        messages.append(struct.pack("!HHIII", 10, 16 + len(sets), 1_800_000_000 + index, index * records, 1) + sets)
    return messages


def ours_decode(capture: list[bytes]) -> tuple[float, int]:
    state = ExportState(TemplateCache(), SamplingTable(), lambda protocol, kind: None)
    start = time.process_time()
    count = 0
    for datagram in capture:
        for flows in decode_ipfix(datagram, "2001:db8::e", 4739, state, 1_800_000_000.0):
            count += len(flows.columns)
    return time.process_time() - start, count


def ours_receiver(capture: list[bytes]) -> tuple[float, int]:
    receiver = FlowReceiver()
    start = time.process_time()
    count = sum(receiver.handle_datagram(d, "2001:db8::e", 4739, 1_800_000_000.0) for d in capture)
    return time.process_time() - start, count


def netflow_package(capture: list[bytes]) -> tuple[float, int]:
    from netflow.utils import parse_packet

    templates: dict = {"netflow": {}, "ipfix": {}}
    start = time.process_time()
    count = 0
    for datagram in capture:
        count += len(parse_packet(datagram, templates).flows)
    return time.process_time() - start, count


def nfcapd_run(capture: list[bytes], repeat: int) -> tuple[float, int] | None:
    """nfcapd's CPU seconds for the capture sent `repeat` times (its CPU time is counted in
    10 ms ticks: it needs many records) and the records it stored; None without nfcapd."""
    if shutil.which("nfcapd") is None or shutil.which("nfdump") is None:
        return None
    port = free_udp_port()
    with tempfile.TemporaryDirectory(prefix="xb-nfcapd-") as directory:
        proc = subprocess.Popen(
            ["nfcapd", "-w", directory, "-b", "::1", "-6", "-p", str(port), "-B", str(64 << 20), "-t", "3600"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(1.0)  # it binds and sets up its file
            before = cpu_seconds(proc.pid)
            with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
                for index, datagram in enumerate(capture * repeat):
                    sock.sendto(datagram, ("::1", port))
                    if index % 200 == 199:
                        time.sleep(0.005)  # stay under its socket buffer: drops would flatter it
            settled = cpu_seconds(proc.pid)
            while True:  # until it stops using CPU
                time.sleep(0.3)
                now = cpu_seconds(proc.pid)
                if now == settled:
                    break
                settled = now
            cpu = settled - before
        finally:
            proc.terminate()
            proc.wait(timeout=10)
        stored = subprocess.run(
            ["nfdump", "-R", directory, "-q", "-o", "fmt:%pkt"], capture_output=True, text=True, timeout=120
        ).stdout
        return cpu, sum(1 for line in stored.splitlines() if line.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datagrams", type=int, default=2000)
    parser.add_argument("--records", type=int, default=25, help="flow records per datagram")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--nfcapd-repeat", type=int, default=10, help="times the capture is sent to nfcapd")
    parser.add_argument("--output")
    args = parser.parse_args()
    capture = build_capture(args.datagrams, args.records)
    expected = args.datagrams * args.records
    runs: dict[str, list[dict]] = {"ours-decode": [], "ours-receiver": [], "netflow": []}
    tools = {"ours-decode": ours_decode, "ours-receiver": ours_receiver, "netflow": netflow_package}
    for _ in range(args.rounds):
        for name, tool in tools.items():
            cpu, count = tool(capture)
            if count != expected:
                raise SystemExit(f"{name} decoded {count} records, expected {expected}")
            runs[name].append({"cpu_s": cpu, "records": count, "records_per_s": count / cpu})
    nfcapd = nfcapd_run(capture, args.nfcapd_repeat)
    medians = {name: median([r["records_per_s"] for r in rounds]) for name, rounds in runs.items()}
    if nfcapd is not None:
        cpu, stored = nfcapd
        medians["nfcapd"] = stored / cpu if cpu else None
    rows = [[name, value, ratio(medians["ours-decode"], value) if value else None] for name, value in medians.items()]
    print(table(["decoder", "records/s (median)", "ours-decode / this"], rows))
    print(f"ours-receiver / netflow: {ratio(medians['ours-receiver'], medians['netflow']):.2f}")
    if nfcapd is not None:
        print(f"nfcapd stored {nfcapd[1]} of {expected * args.nfcapd_repeat} records using {nfcapd[0]:.3f} CPU s")
    payload = {
        "benchmark": "ipfix_decode",
        "environment": environment(),
        "parameters": vars(args),
        "records": expected,
        "rounds": runs,
        "nfcapd": {"cpu_s": nfcapd[0], "records": nfcapd[1]} if nfcapd else None,
        "medians_records_per_s": medians,
        "ratios": {
            "ours_decode_vs_netflow": ratio(medians["ours-decode"], medians["netflow"]),
            "ours_receiver_vs_netflow": ratio(medians["ours-receiver"], medians["netflow"]),
            "ours_decode_vs_nfcapd": ratio(medians["ours-decode"], medians.get("nfcapd") or 0),
            "ours_receiver_vs_nfcapd": ratio(medians["ours-receiver"], medians.get("nfcapd") or 0),
        },
    }
    print(f"result: {write_result('ipfix_decode', payload, args.output)}")


if __name__ == "__main__":
    main()
