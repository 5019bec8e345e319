"""The fuzz targets: every decoder that takes bytes from the network or from disk.

A target is one function of the fuzzer's input. It passes when the decoder returns or
raises the error its receiver counts and drops (`refused`); any other exception is a crash.
`tests/fuzz/run_target.py` runs a target under atheris (coverage-guided), the tests replay
every corpus file in-process, and `python -m bench.fuzz` runs longer campaigns.

Inputs that carry several datagrams (a template, then the data it describes) are framed:
each datagram is preceded by its length as two octets, big-endian (`frames`, `framed`).
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import random
import shutil
import struct
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from analyzer.combiner import PartialsCombiner
from analyzer.partial_evidence import PartitionEvidence
from analyzer.partials import MalformedReport, PartitionReport
from analyzer.sla.policies import load_policies
from analyzer.sla.verdicts import default_policies
from analyzer.store.journal import IntakeJournal, replay
from analyzer.store.memory import WindowStore
from analyzer.store.snapshot import restore_snapshot
from collector.agent.config import load_config
from collector.capture.aggregate import FlowAggregator
from collector.capture.altmark import MarkingPoint, decode_altmark, find_altmark
from collector.capture.pcap import CaptureFileError, read_flows
from collector.capture.tcp_rtt import PassiveTcpRtt
from collector.contract.codec import MalformedShipment, ShipmentParser
from collector.contract.records import FlowId
from collector.flow_export.datasets import MalformedSet
from collector.flow_export.ipfix import decode_ipfix
from collector.flow_export.netflow9 import decode_netflow9
from collector.flow_export.receiver import FlowReceiver
from collector.flow_export.sflow import decode_sflow
from collector.outputs.spool import CURSOR_NAME, WindowSpool
from collector.probes.trace_match import FlowSet, match_icmp6, match_tcp
from collector.system.config_files import ConfigError
from collector.wire import icmp6, trace6
from collector.wire.dissect import dissect_batch, dissect_ethernet, dissect_ip
from collector.wire.ipv6_ext import MalformedPacket, walk_extension_headers
from collector.wire.stamp import AUTH_BASE_LEN, base_hmac_ok, decode_reflector, decode_sender
from collector.wire.stamp_reflect import (
    ReceivedContext,
    ReflectorPolicy,
    SessionCounters,
    TlvStats,
    reflect_in_place,
    stamp_transmit_time,
)
from collector.wire.stamp_tlv import StampDecodeError, hmac_tlv_ok
from xnetmon.lab_sites import load_sites_by_address

CORPUS = Path(__file__).resolve().parent / "corpus"
STAMP_KEY = b"k" * 32
EXPORTER = "2001:db8::99"
EXPORT_NOW = 1_800_000_100.0
TRACE_TARGET = "2001:db8:2::1"
RECEIVE_NS = 1_700_000_000_250_000_000
TRANSMIT_NS = 1_700_000_000_750_000_000


@dataclass(frozen=True, slots=True)
class FuzzTarget:
    name: str
    decode: Callable[[bytes], None]
    refused: tuple[type[Exception], ...]  # what the receiver counts and drops; () = must return
    what: str
    # a structure-aware mutator (libFuzzer's custom mutator, atheris' `custom_mutator`): given
    # the fuzzer's own mutation, (data, max_size, seed) -> new input; None: plain bytes
    mutator: Callable[[Mutation], Callable[[bytes, int, int], bytes]] | None = None

    def run(self, data: bytes) -> None:
        """One input: returns when the decoder took or refused it; raises on a crash."""
        try:
            self.decode(data)
        except self.refused:
            pass

    @property
    def corpus(self) -> Path:
        return CORPUS / self.name


Mutation = Callable[[bytes, int], bytes]  # libFuzzer's mutation of bytes within a size: atheris.Mutate
INFLATED_PER_DEFLATED = 8  # how much larger a deflated input's content may grow than the input's bound


def deflated(mutate: Mutation) -> Callable[[bytes, int, int], bytes]:
    """Mutate what a zlib stream holds, not its compressed octets: almost every mutation of
    deflated bytes fails at inflating, and the decoder behind it is never reached. An input
    that does not inflate starts over from an empty JSON object; a mutation that no longer
    fits `max_size` once deflated gives the input back unchanged."""

    def mutator(data: bytes, max_size: int, seed: int) -> bytes:
        try:
            content = zlib.decompress(data)
        except zlib.error:
            content = b"{}"
        packed = zlib.compress(mutate(content, max_size * INFLATED_PER_DEFLATED), 1)
        return packed if len(packed) <= max_size else data

    return mutator


# What a JSON leaf may become: the bounds the edges check, and values just past them.
_JSON_EDGES = (0, -1, 1, 2**31, 2**53, 2**63 - 1, 2**63, 10**30, 0.5, -0.0, 1e308, "", "video", None, True, [], {})


def json_leaves(mutate: Mutation) -> Callable[[bytes, int, int], bytes]:
    """Mutate a JSON input's structure (a leaf replaced by an edge value or a neighbour of
    its own, an item dropped or repeated) as often as its octets: octet mutations of JSON
    mostly end at the parser, and pydantic's validation behind it, compiled, gives the fuzzer
    no coverage to steer by. Input that does not parse gets octet mutations only."""

    def mutator(data: bytes, max_size: int, seed: int) -> bytes:
        rng = random.Random(seed)
        try:
            document = json.loads(data)
            slots = list(_json_slots(document))
        except (ValueError, RecursionError):  # not JSON, or nested deeper than Python recurses
            return mutate(data, max_size)
        if rng.random() < 0.5:
            return mutate(data, max_size)
        if not slots:
            return mutate(data, max_size)
        holder, key = rng.choice(slots)
        value = holder[key]
        choice = rng.random()
        if choice < 0.15:
            del holder[key]
        elif choice < 0.3 and isinstance(holder, list):
            holder.insert(key, value)
        elif isinstance(value, int) and not isinstance(value, bool) and choice < 0.6:
            holder[key] = value + rng.choice((-1, 1, value, -2 * value))
        else:
            holder[key] = rng.choice(_JSON_EDGES)
        out = json.dumps(document, separators=(",", ":")).encode()
        return out if len(out) <= max_size else data

    return mutator


def _json_slots(node: object) -> Iterator[tuple[Any, Any]]:
    """(container, key or index) of every value in a parsed JSON document, depth first."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in list(items):
        yield node, key
        yield from _json_slots(value)


def frames(data: bytes) -> Iterator[bytes]:
    """The datagrams of a framed input; a length past the end takes what is left."""
    offset = 0
    while offset + 2 <= len(data):
        (length,) = struct.unpack_from("!H", data, offset)
        offset += 2
        yield data[offset : offset + length]
        offset += length


def framed(*datagrams: bytes) -> bytes:
    return b"".join(struct.pack("!H", len(d)) + d for d in datagrams)


SCRATCH_ENV = "XNETMON_FUZZ_SCRATCH"  # where the runner wants it (its work directory)
_scratch: Path | None = None


def scratch_dir() -> Path:
    """A private directory for targets that read files, emptied before each input, removed
    at exit (libFuzzer's exit skips that: the runner puts it in its work directory)."""
    global _scratch
    if _scratch is None:
        base = os.environ.get(SCRATCH_ENV) or ("/dev/shm" if os.path.isdir("/dev/shm") else None)
        _scratch = Path(tempfile.mkdtemp(prefix="xnetmon-fuzz-", dir=base))
        atexit.register(shutil.rmtree, _scratch, True)
    for child in _scratch.iterdir():
        shutil.rmtree(child) if child.is_dir() else child.unlink()
    return _scratch


def _scratch_file(name: str, data: bytes) -> Path:
    path = scratch_dir() / name
    path.write_bytes(data)
    return path


# -- STAMP ---------------------------------------------------------------------------------


def stamp_sender(data: bytes) -> None:
    """A request as the reflector decodes it, in both modes."""
    for authenticated in (False, True):
        try:
            decode_sender(data, authenticated=authenticated)
        except StampDecodeError:
            pass


def stamp_reply(data: bytes) -> None:
    """A reply as the sender decodes and checks it, in both modes."""
    for authenticated in (False, True):
        try:
            decode_reflector(data, authenticated=authenticated)
        except StampDecodeError:
            pass
    base_hmac_ok(data, STAMP_KEY)
    hmac_tlv_ok(data, STAMP_KEY, AUTH_BASE_LEN)


_CONTEXT = ReceivedContext(b"\x20\x01\x0d\xb8" + bytes(11) + b"\x01", 40000, b"\x20\x01\x0d\xb8" + bytes(11) + b"\x02")
_POLICY = ReflectorPolicy(permitted_dscp=frozenset({0, 34}))


def stamp_reflect(data: bytes) -> None:
    """A request rewritten into its reply, as the reflector does: stateless, stateful,
    authenticated, and with the socket's context for the TLVs that report it."""
    modes: tuple[dict, ...] = (
        {},
        {"session": SessionCounters(), "context": _CONTEXT, "policy": _POLICY, "stats": TlvStats()},
        {"authenticated": True, "key": STAMP_KEY, "session": SessionCounters(), "stats": TlvStats()},
        {"key": STAMP_KEY, "context": _CONTEXT, "stats": TlvStats()},
    )
    for mode in modes:
        buf = bytearray(data)
        try:
            reflect_in_place(buf, len(buf), receive_ns=RECEIVE_NS, error_estimate=0x8407, hop_limit=61, **mode)
        except StampDecodeError:
            continue
        stamp_transmit_time(
            buf,
            len(buf),
            TRANSMIT_NS,
            session=mode.get("session"),
            authenticated=mode.get("authenticated", False),
            key=mode.get("key"),
        )


# -- ICMPv6 and traceroute -------------------------------------------------------------------


def icmp6_message(data: bytes) -> None:
    """An ICMPv6 message read from the raw socket: an echo reply or an error quoting a request."""
    for decode in (icmp6.decode_echo, icmp6.decode_error):
        try:
            decode(data)
        except icmp6.Icmp6DecodeError:
            pass


_FLOWS = FlowSet(TRACE_TARGET, (FlowId("udp", 0, 33434, 33434), FlowId("tcp", 0, 33435, 80)), tcp_base=1000)


def trace_answer(data: bytes) -> None:
    """An answer to a trace probe: ICMPv6 from the raw socket (each protocol's view), a TCP
    segment, and the payload quoted in a UDP error."""
    for protocol in ("icmp", "udp", "tcp"):
        match_icmp6(data, TRACE_TARGET, RECEIVE_NS, _FLOWS, protocol)
    match_tcp(data, TRACE_TARGET, RECEIVE_NS, _FLOWS)
    trace6.udp_seq(data)
    quote = trace6.parse_quote(data)
    if quote is not None:
        trace6.parse_tcp(quote.transport)


# -- Flow export ---------------------------------------------------------------------------


def _flow_export(data: bytes, decode: Callable[[bytes, FlowReceiver], list]) -> None:
    """Datagrams of one exporter into a fresh receiver's state, and what they decode to
    counted the way the receiver counts it."""
    receiver = FlowReceiver()
    for datagram in frames(data):
        try:
            decoded = decode(datagram, receiver)
        except MalformedSet:
            continue
        for flows in decoded:
            receiver._count(flows)


def ipfix(data: bytes) -> None:
    _flow_export(data, lambda d, r: decode_ipfix(d, EXPORTER, 4739, r.state, EXPORT_NOW))


def netflow9(data: bytes) -> None:
    _flow_export(data, lambda d, r: decode_netflow9(d, EXPORTER, 2055, r.state, EXPORT_NOW))


def sflow(data: bytes) -> None:
    _flow_export(data, lambda d, r: decode_sflow(d, EXPORTER, EXPORT_NOW, r._count_malformed))


# -- Packets -------------------------------------------------------------------------------


def capture_file(data: bytes) -> None:
    """A pcap or pcapng file read into flows: the batch path, and the per-packet path with
    the observers that make it (passive TCP RTT, alternate marking)."""
    path = _scratch_file("capture.pcap", data)
    read_flows(path, FlowAggregator("fuzz"))
    read_flows(path, FlowAggregator("fuzz"), observers=(PassiveTcpRtt(), MarkingPoint("fuzz")))


def packet(data: bytes) -> None:
    """One packet dissected: as an Ethernet frame, as an IP packet, and in a batch both on
    the fixed-offset path and packet by packet; the two batch paths must agree."""
    try:
        dissect_ethernet(data)
    except MalformedPacket:
        pass
    try:
        dissect_ip(data)
    except MalformedPacket:
        pass
    octets = np.frombuffer(data, dtype=np.uint8)
    offsets, lengths = np.zeros(1, dtype=np.int64), np.full(1, len(data), dtype=np.int64)
    fast = dissect_batch(octets, offsets, lengths)
    slow = dissect_batch(octets, offsets, lengths, per_packet=True)
    if len(fast.kept) != len(slow.kept) or any(
        not np.array_equal(getattr(fast, column), getattr(slow, column)) for column in _BATCH_COLUMNS
    ):
        raise AssertionError(f"fixed-offset and per-packet dissection differ: {fast} != {slow}")
    if fast.marks != slow.marks:
        raise AssertionError(f"fixed-offset and per-packet marks differ: {fast.marks} != {slow.marks}")


_BATCH_COLUMNS = (
    "kept",
    "src_high",
    "src_low",
    "dst_high",
    "dst_low",
    "dscp",
    "flow_label",
    "protocol",
    "source_port",
    "destination_port",
    "length",
    "tcp_flags",
)


def ipv6_extensions(data: bytes) -> None:
    walk_extension_headers(data)


def altmark(data: bytes) -> None:
    """A packet at an alternate-marking point (and its first octets as option data)."""
    point = MarkingPoint("fuzz", max_flows=4, max_blocks=4)
    for ts_ns in (1_000, 2_000, 3_000):
        point.observe(ts_ns, data)
    point.flush()
    point.blocks()
    try:
        find_altmark(data)
    except MalformedPacket:
        pass
    decode_altmark(data[:4])


# -- What agents ship, and the files the parts keep ----------------------------------------


def shipment(data: bytes) -> None:
    ShipmentParser().parse(data)


def spool(data: bytes) -> None:
    """A spool left by a previous run (a segment, then the same octets as its cursor),
    opened and drained."""
    for name in ("00000000000000000000.jsonl", CURSOR_NAME):
        directory = scratch_dir() / "spool"
        directory.mkdir()
        (directory / name).write_bytes(data)
        with WindowSpool(directory, max_windows=1000) as queue:
            while queue.head() is not None:
                assert queue.head_windows >= 0
                queue.pop_head()


def partition_report(data: bytes) -> None:
    """A partition's report: refused, or taken by a combiner of two partitions, whose slice
    intervals are then closed (past their grace) into a store and judged."""
    report = PartitionReport.decode(data)
    store = WindowStore(_policies(), catch_up_s=0)
    combiner = PartialsCombiner(store, partitions=2)
    if combiner.add(report, 0):
        combiner.advance(combiner.grace_ns)
        store.slice_verdicts(store.judged_through_ns)


@functools.cache
def _policies():
    return default_policies()


def partition_evidence(data: bytes) -> None:
    """A partition's root-cause epoch: refused, or one the combiner can build."""
    PartitionEvidence.decode(data).epoch()


def snapshot(data: bytes) -> None:
    restore_snapshot(_scratch_file("snapshot.json", data))


def journal(data: bytes) -> None:
    """An intake journal segment left by a killed analyzer, replayed into a fresh store."""
    directory = scratch_dir() / "journal"
    directory.mkdir()
    (directory / "00000000000000000000.journal").write_bytes(data)
    left = IntakeJournal(directory)
    try:
        replay(left, WindowStore(default_policies(), catch_up_s=0), 0)
    finally:
        left.close()


def agent_config(data: bytes) -> None:
    load_config(_scratch_file("agent.yaml", data))


def policies(data: bytes) -> None:
    load_policies(_scratch_file("policies.yaml", data))


def topology(data: bytes) -> None:
    load_sites_by_address(str(_scratch_file("topology.yaml", data)))


TARGETS: dict[str, FuzzTarget] = {
    t.name: t
    for t in (
        FuzzTarget("stamp_sender", stamp_sender, (), "STAMP requests (collector/wire/stamp.py, stamp_tlv.py)"),
        FuzzTarget("stamp_reply", stamp_reply, (), "STAMP replies and their HMACs (collector/wire/stamp.py)"),
        FuzzTarget("stamp_reflect", stamp_reflect, (), "requests rewritten in place (collector/wire/stamp_reflect.py)"),
        FuzzTarget("icmp6", icmp6_message, (), "ICMPv6 echo replies and errors (collector/wire/icmp6.py)"),
        FuzzTarget("trace", trace_answer, (), "trace answers (collector/wire/trace6.py, probes/trace_match.py)"),
        FuzzTarget("ipfix", ipfix, (), "IPFIX messages (collector/flow_export/ipfix.py)"),
        FuzzTarget("netflow9", netflow9, (), "NetFlow v9 packets (collector/flow_export/netflow9.py)"),
        FuzzTarget("sflow", sflow, (), "sFlow v5 datagrams (collector/flow_export/sflow.py)"),
        FuzzTarget("pcap", capture_file, (CaptureFileError,), "pcap and pcapng files (collector/capture/pcap.py)"),
        FuzzTarget("dissect", packet, (), "packets (collector/wire/dissect.py)"),
        FuzzTarget("ipv6_ext", ipv6_extensions, (MalformedPacket,), "extension headers (collector/wire/ipv6_ext.py)"),
        FuzzTarget("altmark", altmark, (MalformedPacket,), "alternate marking (collector/capture/altmark.py)"),
        FuzzTarget("shipment", shipment, (MalformedShipment,), "shipment bodies (collector/contract/codec.py)"),
        FuzzTarget("spool", spool, (), "spool segments and cursors (collector/outputs/spool.py)"),
        FuzzTarget("snapshot", snapshot, (ValueError,), "analyzer snapshots (analyzer/store/snapshot.py)"),
        FuzzTarget(
            "partials",
            partition_report,
            (MalformedReport,),
            "partition reports (analyzer/partials.py) into a combiner (analyzer/combiner.py)",
            json_leaves,
        ),
        FuzzTarget(
            "evidence",
            partition_evidence,
            (MalformedReport,),
            "partition epochs (analyzer/partial_evidence.py)",
            deflated,
        ),
        FuzzTarget("journal", journal, (), "the HTTP intake's journal (analyzer/store/journal.py)"),
        FuzzTarget("agent_config", agent_config, (ConfigError,), "agent configuration (collector/agent/config.py)"),
        FuzzTarget("policies", policies, (ConfigError,), "SLA policies (analyzer/sla/policies.py)"),
        FuzzTarget("topology", topology, (ValueError,), "topology files (lab/topology.py, xnetmon/lab_sites.py)"),
    )
}
