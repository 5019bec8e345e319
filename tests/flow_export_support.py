"""Test helpers for the flow receiver: hand-written IPFIX, NetFlow v9 and sFlow v5 encoders,
slice test captures built with scapy, and softflowd driven over a capture file.

The encoders follow the RFCs' layouts field by field (RFC 7011 sections 3.1-3.4, RFC 3954
sections 5-6, sFlow v5 "flow_sample" and "sampled_header"); they are deliberately simple and
separate from the decoders they test.
"""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import subprocess
from collections import defaultdict
from pathlib import Path

from tests.support import DEADLINE_S, wait_until

SLICE_DSCP = {"video": 34, "egov": 26, "data": 18, "best-effort": 0}
# Each slice's traffic goes to its own destination prefix, as an addressing plan would
# have it: softflowd exports no IPv6 traffic class, so interop tests classify by prefix.
SLICE_PREFIX = {
    "video": "2001:db8:1::/48",
    "egov": "2001:db8:2::/48",
    "data": "2001:db8:3::/48",
    "best-effort": "2001:db8:4::/48",
}
PREFIX_RULES = [{"slice": name, "destination": prefix} for name, prefix in SLICE_PREFIX.items()]


# -- IPFIX ----------------------------------------------------------------------------------


def ipfix_message(sets: list[bytes], domain: int = 1, export_time: int = 1_800_000_000, sequence: int = 0) -> bytes:
    body = b"".join(sets)
    return struct.pack("!HHIII", 10, 16 + len(body), export_time, sequence, domain) + body


def ipfix_template_set(template_id: int, fields: list[tuple[int, int]], *, scope_count: int = 0) -> bytes:
    """A template set (options template set when scope_count > 0) with one record."""
    head = struct.pack("!HH", template_id, len(fields))
    if scope_count:
        head += struct.pack("!H", scope_count)
    record = head + b"".join(struct.pack("!HH", e, n) for e, n in fields)
    return struct.pack("!HH", 3 if scope_count else 2, 4 + len(record)) + record


def withdrawal_set(template_id: int, *, options: bool = False) -> bytes:
    return struct.pack("!HHHH", 3 if options else 2, 8, template_id, 0)


def data_set(set_id: int, records: list[bytes], padding: int = 0) -> bytes:
    body = b"".join(records) + bytes(padding)
    return struct.pack("!HH", set_id, 4 + len(body)) + body


def record(fields: list[tuple[int, int]], values: dict[int, int | bytes]) -> bytes:
    """One data record of a fixed-length template: integers big-endian, bytes as they are."""
    out = b""
    for element, length in fields:
        value = values.get(element, 0)
        out += value if isinstance(value, bytes) else value.to_bytes(length, "big")
    return out


# The template of the unit tests: IPv6 5-tuple, DSCP, flow label, counters, times, direction.
V6_FIELDS = [
    (27, 16),
    (28, 16),
    (4, 1),
    (7, 2),
    (11, 2),
    (195, 1),
    (31, 4),
    (1, 8),
    (2, 8),
    (152, 8),
    (153, 8),
    (61, 1),
]


def v6_values(
    src: str,
    dst: str,
    *,
    dscp: int = 34,
    flow_label: int = 0x12345,
    octets: int = 1500,
    packets: int = 3,
    sport: int = 1000,
    dport: int = 2000,
    protocol: int = 17,
    direction: int = 0,
    start_ms: int = 1_800_000_000_000,
) -> dict[int, int | bytes]:
    return {
        27: socket.inet_pton(socket.AF_INET6, src),
        28: socket.inet_pton(socket.AF_INET6, dst),
        4: protocol,
        7: sport,
        11: dport,
        195: dscp,
        31: flow_label,
        1: octets,
        2: packets,
        152: start_ms,
        153: start_ms + 500,
        61: direction,
    }


# -- NetFlow v9 -----------------------------------------------------------------------------


def v9_packet(
    flowsets: list[bytes],
    source_id: int = 7,
    unix_secs: int = 1_800_000_000,
    uptime_ms: int = 3_600_000,
    sequence: int = 0,
) -> bytes:
    return struct.pack("!HHIIII", 9, len(flowsets), uptime_ms, unix_secs, sequence, source_id) + b"".join(flowsets)


def v9_template_flowset(template_id: int, fields: list[tuple[int, int]]) -> bytes:
    record_ = struct.pack("!HH", template_id, len(fields)) + b"".join(struct.pack("!HH", *f) for f in fields)
    return struct.pack("!HH", 0, 4 + len(record_)) + record_


def v9_options_template_flowset(
    template_id: int, scope: list[tuple[int, int]], options: list[tuple[int, int]]
) -> bytes:
    body = struct.pack("!HHH", template_id, 4 * len(scope), 4 * len(options))
    body += b"".join(struct.pack("!HH", *f) for f in scope + options)
    body += bytes(-(len(body) + 4) % 4)
    return struct.pack("!HH", 1, 4 + len(body)) + body


# -- sFlow v5 -------------------------------------------------------------------------------


def sflow_datagram(samples: list[bytes], agent: str = "2001:db8::99", sub_agent: int = 3) -> bytes:
    packed = socket.inet_pton(socket.AF_INET6, agent)
    head = struct.pack("!II", 5, 2) + packed + struct.pack("!IIII", sub_agent, 1, 1000, len(samples))
    return head + b"".join(samples)


def sflow_flow_sample(headers: list[bytes], rate: int, *, expanded: bool = False, frame_extra: int = 4) -> bytes:
    """A flow sample (format 1) or expanded flow sample (3) of raw Ethernet header records."""
    records = b""
    for header in headers:
        padded = header + bytes(-len(header) % 4)
        raw = struct.pack("!IIII", 1, len(header) + frame_extra, frame_extra, len(header)) + padded
        records += struct.pack("!II", 1, len(raw)) + raw
    if expanded:
        fixed = struct.pack("!IIIIIIIIIII", 1, 0, 5, rate, rate * 10, 0, 0, 1, 0, 2, len(headers))
        fmt = 3
    else:
        fixed = struct.pack("!IIIIIIII", 1, 5, rate, rate * 10, 0, 1, 2, len(headers))
        fmt = 1
    body = fixed + records
    return struct.pack("!II", fmt, len(body)) + body


def sflow_counter_sample() -> bytes:
    body = struct.pack("!III", 1, 5, 0)  # sequence, source id, no records
    return struct.pack("!II", 2, len(body)) + body


# -- test captures --------------------------------------------------------------------------


def write_slice_pcap(path: Path, flows_per_slice: int = 3, packets_per_flow: int = 20) -> None:
    """IPv6 TCP and UDP flows in every slice, each slice with its DSCP, a flow label per flow
    and destinations in its prefix (SLICE_PREFIX); packet sizes vary so byte counts mean something."""
    from scapy.all import TCP, UDP, Ether, IPv6, Raw, wrpcap

    packets = []
    t = 1_700_000_000.0
    for slice_index, dscp in enumerate(SLICE_DSCP.values(), start=1):
        for flow in range(flows_per_slice):
            transport = (
                TCP(sport=40000 + flow, dport=443, flags="A") if flow % 2 else UDP(sport=50000 + flow, dport=5004)
            )
            for n in range(packets_per_flow):
                packet = (
                    Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
                    / IPv6(
                        src=f"2001:db8:ff::{flow + 1}",
                        dst=f"2001:db8:{slice_index}::{flow + 1}",
                        tc=dscp << 2,
                        fl=(slice_index << 16) | flow,
                        hlim=64,
                    )
                    / transport
                    / Raw(bytes(40 + 13 * ((n * 7 + flow) % 50)))
                )
                packet.time = t
                t += 0.001
                packets.append(packet)
    wrpcap(str(path), packets)


def pcap_truth(path: Path) -> dict[str, tuple[int, int]]:
    """Per slice (by destination prefix) (IP bytes, packets) of a capture, read with dpkt:
    an implementation independent of ours and of the exporters'."""
    import ipaddress

    import dpkt

    prefixes = {name: ipaddress.ip_network(prefix) for name, prefix in SLICE_PREFIX.items()}
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    with open(path, "rb") as handle:
        for _, frame in dpkt.pcap.Reader(handle):
            ip6 = dpkt.ethernet.Ethernet(frame).data
            if not isinstance(ip6, dpkt.ip6.IP6):
                continue
            destination = ipaddress.IPv6Address(ip6.dst)
            name = next(n for n, p in prefixes.items() if destination in p)
            totals[name][0] += 40 + ip6.plen
            totals[name][1] += 1
    return {name: (b, p) for name, (b, p) in totals.items()}


# -- softflowd over a capture ---------------------------------------------------------------


def softflowd_from_pcap(
    pcap: Path,
    collector: tuple[str, int],
    version: str,
    workdir: Path,
    extra: tuple[str, ...] = (),
    timeout: float = DEADLINE_S,
) -> str:
    """Run softflowd over `pcap`, exporting to `collector`; return its statistics output.

    softflowd 1.1.0 in file mode waits on its control socket between reads, so the capture
    is only read while something connects to it: we connect until the process exits (it
    exits at the end of the file, after exporting every flow)."""
    control = workdir / f"softflowd-{version}.ctl"
    host, port = collector
    argv = [
        "softflowd",
        "-d",
        "-r",
        str(pcap),
        "-n",
        f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "-v",
        version,
        "-c",
        str(control),
        "-p",
        str(workdir / f"softflowd-{version}.pid"),
        *extra,
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def finished() -> bool:
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as poke:
            poke.connect(str(control))
        return proc.poll() is not None

    try:
        wait_until(finished, timeout, what=f"softflowd finishing {pcap}")
    finally:
        if proc.poll() is None:
            proc.kill()
        output = proc.communicate()[0]
    return output


def exported_datagrams(softflowd_statistics: str) -> int:
    """The export datagrams softflowd says it sent, from its statistics (its output at exit,
    or `softflowctl statistics`): "Flows exported: 12 (12 records) in 1 packets"."""
    match = re.search(r"^Flows exported: \d+ \(\d+ records\) in (\d+) packets", softflowd_statistics, re.MULTILINE)
    assert match, softflowd_statistics
    return int(match[1])


# -- sending from chosen sources: hostile exporters -------------------------------------------


def handled(receiver) -> int:
    """Datagrams the receiver has dealt with: counted per exporter, or refused before decoding."""
    with receiver.reading():
        return sum(receiver.datagrams.values()) + sum(receiver.refused.values())


def send_from(
    receiver, destination: tuple[str, int], datagrams: list[tuple[tuple[str, int], bytes]], batch: int = 32
) -> None:
    """Send each (source address and port, datagram) from a socket bound to that source (any
    127.0.0.0/8 address is this host's, so IPv4 loopback gives as many exporters as wanted),
    `batch` at a time, waiting until the receiver handled each batch: the kernel's socket
    buffer never overflows, so every datagram sent is one the receiver saw."""
    start = handled(receiver)
    for offset in range(0, len(datagrams), batch):
        for (address, port), datagram in datagrams[offset : offset + batch]:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((address, port))
                sock.sendto(datagram, destination)
        wait_for_handled(receiver, start + min(offset + batch, len(datagrams)))


def wait_for_handled(receiver, count: int) -> None:
    wait_until(
        lambda: handled(receiver) >= count, what=lambda: f"{count} datagrams handled, {handled(receiver)} so far"
    )
