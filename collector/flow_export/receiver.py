"""The flow export receiver: UDP sockets in, per-slice counters and top talkers out.

One thread reads every socket (IPv6 and IPv4, any number of ports) and tells the protocol
from the datagram itself, so one port may take IPFIX, NetFlow v9 and sFlow alike: the
first 16 bits are the version for IPFIX (10) and v9 (9), the first 32 bits for sFlow (5).
Each decoded data set is classified into slices record by record (`SliceClassifier`),
scaled by its sampling rate and added to `TrafficCounters`.

Before anything of a datagram is read, its source must be admitted: on the exporter
allow-list (`exporters`, prefixes; none: any address) and, when new, within `max_exporters`
exporters (every exporter adds series to /metrics). A refused datagram is counted by reason
(`refused`: "not-allowed", "exporter-limit") and leaves nothing else behind. Templates and
learnt rates are bounded too (templates.py, sampling.py) and their refusals counted alike.

A datagram that cannot be decoded is counted under (protocol, kind) and dropped; nothing
a datagram holds can stop the thread (an unexpected error is counted as kind "internal"
and logged once per protocol), and an error in the thread's own loop is counted in
`errors["receive"]` and the loop carries on. Templates and learnt sampling rates are saved
in `state_dir` (templates.json, sampling.json) by a thread of their own (state_saver.py),
never under the lock during I/O; a failed save is counted in `errors["state-save"]`.
The state directory is held (collector/system/dir_lock.py) from the constructor, before a
byte of it is read, until `stop()`: a second receiver given it is refused with
`ReceiverStateError`, which names the holder's pid, and leaves its files as they were.

Everything the thread changes is guarded by one lock, held per datagram; readers
(/metrics scrapes, the top-talkers endpoint, the command's table) take it briefly to copy.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from collector.contract.records import FlowRecord
from collector.flow_export.allow_list import ExporterAllowList
from collector.flow_export.datasets import MalformedSet
from collector.flow_export.export_state import DecodedFlows, ExportState
from collector.flow_export.ipfix import decode_ipfix
from collector.flow_export.netflow9 import decode_netflow9
from collector.flow_export.sampling import SamplingTable
from collector.flow_export.sflow import decode_sflow
from collector.flow_export.state_saver import StateSaver
from collector.flow_export.templates import (
    DEFAULT_MAX_TEMPLATES,
    DEFAULT_MAX_TEMPLATES_PER_EXPORTER,
    DEFAULT_PENDING_LIMIT,
    DEFAULT_TEMPLATE_TIMEOUT_S,
    TemplateCache,
)
from collector.system.dir_lock import DirectoryLock, StateDirectoryUnusable, hold_state_directory
from collector.traffic.classifier import SliceClassifier
from collector.traffic.counters import TrafficCounters, address_text

log = logging.getLogger(__name__)

RECEIVE_BUFFER = 8 << 20  # exporters send in bursts at the end of each expiry interval
MAX_DATAGRAM = 65535
HOUSEKEEPING_S = 1.0
DEFAULT_MAX_EXPORTERS = 1024


class ReceiverStateError(RuntimeError):
    """The state directory cannot be held: another receiver has it, or it cannot be made."""


@dataclass
class ReceiverSettings:
    # loopback unless configured: exposing the receiver to other hosts is the operator's choice
    listen: list[tuple[str, int]] = field(default_factory=lambda: [("::1", 4739)])
    state_dir: Path | None = None
    default_sampling: dict[str, float] = field(default_factory=dict)  # exporter address -> N
    exporters: list[str] | None = None  # allow-list of prefixes; None: any exporter
    max_exporters: int = DEFAULT_MAX_EXPORTERS
    max_templates: int = DEFAULT_MAX_TEMPLATES
    max_templates_per_exporter: int = DEFAULT_MAX_TEMPLATES_PER_EXPORTER
    template_timeout_s: float = DEFAULT_TEMPLATE_TIMEOUT_S
    pending_limit: int = DEFAULT_PENDING_LIMIT
    talker_capacity: int = 1000
    slice_rules: list[dict] | None = None  # SliceClassifier.from_rules; None: the default catalogue
    rules_source: str = "<rules>"  # named in errors about the rules


class FlowReceiver:
    def __init__(
        self,
        settings: ReceiverSettings | None = None,
        classifier: SliceClassifier | None = None,
        *,
        on_flows: Callable[[DecodedFlows], None] | None = None,
    ) -> None:
        self.settings = settings or ReceiverSettings()
        if classifier is None:
            rules = self.settings.slice_rules
            classifier = (
                SliceClassifier.from_rules(rules, source=self.settings.rules_source)
                if rules
                else SliceClassifier.default()
            )
        self.classifier = classifier
        self.counters = TrafficCounters(self.settings.talker_capacity)
        self.malformed: Counter[tuple[str, str]] = Counter()
        self.datagrams: Counter[tuple[str, str]] = Counter()  # (exporter, protocol)
        self.refused: Counter[str] = Counter()  # datagrams refused before decoding, by reason
        self.errors: Counter[str] = Counter()  # background failures, by component
        self.lock = threading.Lock()
        self.allow_list = ExporterAllowList(self.settings.exporters)
        self._exporters: set[str] = set()  # admitted exporter addresses
        state_dir = self.settings.state_dir
        self._state_hold = _hold_state_dir(state_dir) if state_dir else None
        sampling_path = state_dir / "sampling.json" if state_dir else None
        templates = TemplateCache(
            state_dir / "templates.json" if state_dir else None,
            timeout_s=self.settings.template_timeout_s,
            pending_limit=self.settings.pending_limit,
            max_templates=self.settings.max_templates,
            max_per_exporter=self.settings.max_templates_per_exporter,
        )
        sampling = SamplingTable(self.settings.default_sampling)
        if sampling_path is not None:
            sampling.load(sampling_path)
        self.state = ExportState(templates, sampling, self._count_malformed)
        self.saver = StateSaver(self.lock, templates, sampling, sampling_path, self._count_save_error)
        self.on_flows = on_flows
        self._pending_dropped_seen: Counter[str] = Counter()
        self._logged_protocols: set[str] = set()
        self._sockets: list[socket.socket] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._housekeeping_at = 0.0

    # -- decoding (callable without sockets: tests and benchmarks feed datagrams here) ----

    def handle_datagram(self, data: bytes | memoryview, exporter: str, port: int, now: float | None = None) -> int:
        """Decode and count one datagram; the number of flow records it carried (0 if malformed)."""
        now = time.time() if now is None else now
        with self.lock:
            if exporter not in self._exporters:
                refusal = self._admit(exporter)
                if refusal is not None:
                    if not self.refused[refusal]:  # once per reason: a flood must not flood the log
                        log.warning(
                            "refusing flow exports from %s (%s); further refusals are only counted "
                            "in xnet_flow_refused_total",
                            exporter,
                            refusal,
                        )
                    self.refused[refusal] += 1
                    return 0
            protocol = _protocol_of(data)
            if protocol is None:
                self._count_malformed("unknown", "version")
                return 0
            self.datagrams[(exporter, protocol)] += 1
            try:
                if protocol == "ipfix":
                    decoded = decode_ipfix(data, exporter, port, self.state, now)
                elif protocol == "netflow9":
                    decoded = decode_netflow9(data, exporter, port, self.state, now)
                else:
                    decoded = decode_sflow(data, exporter, now, self._count_malformed)
            except MalformedSet as exc:  # MalformedMessage included
                self._count_malformed(protocol, exc.kind)
                return 0
            except Exception:  # a decoder bug must not end the receiver
                self._count_malformed(protocol, "internal")
                if protocol not in self._logged_protocols:
                    self._logged_protocols.add(protocol)
                    log.exception("%s datagram from %s could not be decoded", protocol, exporter)
                return 0
            self._note_pending_drops()
            return sum(self._count(flows) for flows in decoded)

    def _admit(self, exporter: str) -> str | None:
        """Admit a new exporter, or say why not."""
        if not self.allow_list.allows(exporter):
            return "not-allowed"
        if len(self._exporters) >= self.settings.max_exporters:
            return "exporter-limit"
        self._exporters.add(exporter)
        return None

    def refusals(self) -> dict[str, int]:
        """Everything refused by reason: datagrams, templates and learnt rates (lock held)."""
        counts = Counter(self.refused)
        counts.update(self.state.templates.refused)
        if self.state.sampling.refused:
            counts["sampling-limit"] = self.state.sampling.refused
        return dict(counts)

    def _count(self, flows: DecodedFlows) -> int:
        c = flows.columns
        classify = self.classifier.classify
        # map over the columns: no tuple per record to pack and unpack again
        if c.active_sid is None and c.slice_id is None:
            slices = list(map(classify, c.source, c.destination, c.dscp, c.flow_label))
        else:
            slices = list(
                map(
                    classify,
                    c.source,
                    c.destination,
                    c.dscp,
                    c.flow_label,
                    c.active_sid or [None] * len(c),
                    c.slice_id or [None] * len(c),
                )
            )
        packets, octets = c.packets, c.octets
        if flows.rates is not None:
            packets = [round(n * r) for n, r in zip(packets, flows.rates)]
            octets = [round(n * r) for n, r in zip(octets, flows.rates)]
        elif flows.rate != 1:
            rate = flows.rate
            packets = [round(n * rate) for n in packets]
            octets = [round(n * rate) for n in octets]
        self.counters.count_columns(slices, flows.exporter, c.direction, packets, octets, c.source)
        if self.on_flows is not None:
            self.on_flows(flows)
        return len(c)

    def _count_malformed(self, protocol: str, kind: str) -> None:
        self.malformed[(protocol, kind)] += 1

    def _count_save_error(self) -> None:
        self.errors["state-save"] += 1

    def _note_pending_drops(self) -> None:
        dropped = self.state.templates.pending_dropped
        if dropped != self._pending_dropped_seen:  # data whose template never came in time
            for protocol, count in dropped.items():
                self.malformed[(protocol, "no-template")] += count - self._pending_dropped_seen[protocol]
            self._pending_dropped_seen = Counter(dropped)

    def housekeeping(self, now: float | None = None) -> None:
        """Expire templates and parked data (saving is the saver thread's)."""
        now = time.time() if now is None else now
        with self.lock:
            self.state.templates.expire(now)
            self._note_pending_drops()

    # -- sockets ----------------------------------------------------------------------------

    def start(self) -> FlowReceiver:
        """Bind every listen address (OSError if one cannot be bound) and start the thread."""
        try:
            for host, port in self.settings.listen:
                self._sockets.append(_bind(host, port))
        except OSError:
            self.close_sockets()
            raise
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, name="flow-receiver", daemon=True)
        self._thread.start()
        self.saver.start()
        return self

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [s.getsockname()[:2] for s in self._sockets]

    def _serve(self) -> None:
        selector = selectors.DefaultSelector()
        for sock in self._sockets:
            selector.register(sock, selectors.EVENT_READ)
        try:
            while not self._stop.is_set():
                try:
                    self._serve_once(selector)
                except Exception:  # counted, logged, and the receiving goes on
                    with self.lock:
                        self.errors["receive"] += 1
                    log.exception("flow receiver")
        finally:
            selector.close()

    def _serve_once(self, selector: selectors.BaseSelector) -> None:
        for key, _ in selector.select(timeout=0.2):
            self._drain(cast(socket.socket, key.fileobj))  # only sockets are registered
        now = time.time()
        if now - self._housekeeping_at >= HOUSEKEEPING_S:
            self._housekeeping_at = now
            self.housekeeping(now)

    def _drain(self, sock: socket.socket) -> None:
        for _ in range(256):  # then let the other sockets have a turn
            try:
                data, address = sock.recvfrom(MAX_DATAGRAM)
            except BlockingIOError:
                return
            except OSError as exc:
                log.warning("receive error: %s", exc)
                return
            host = address[0]
            if host.startswith("::ffff:") and "." in host:
                host = host[7:]
            self.handle_datagram(data, host, address[1])

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.close_sockets()
        self.saver.stop()  # with its last save: only then may another receiver have the directory
        if self._state_hold is not None:
            self._state_hold.release()
            self._state_hold = None

    def close_sockets(self) -> None:
        for sock in self._sockets:
            sock.close()
        self._sockets = []

    def __enter__(self) -> FlowReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- reading (other threads) ---------------------------------------------------------

    @contextmanager
    def reading(self) -> Iterator[FlowReceiver]:
        with self.lock:
            yield self


def _hold_state_dir(state_dir: Path) -> DirectoryLock:
    try:
        return hold_state_directory(state_dir, "flow state directory", "each receiver needs its own state_dir")
    except StateDirectoryUnusable as exc:
        raise ReceiverStateError(str(exc)) from None


def flow_records(flows: DecodedFlows, classifier: SliceClassifier) -> list[FlowRecord]:
    """The records of a decoded set as FlowRecords (for tests and consumers that want objects;
    the counting path never builds them)."""
    c = flows.columns
    n = len(c)
    rates = flows.rates or [flows.rate] * n
    segments = c.segments or [()] * n
    sids = c.active_sid or [None] * n
    slice_ids = c.slice_id or [None] * n
    return [
        FlowRecord(
            exporter=flows.exporter,
            observation_domain=flows.domain,
            source=address_text(c.source[i]),
            destination=address_text(c.destination[i]),
            protocol=c.protocol[i],
            source_port=c.source_port[i],
            destination_port=c.destination_port[i],
            dscp=c.dscp[i],
            flow_label=c.flow_label[i],
            slice=classifier.classify(c.source[i], c.destination[i], c.dscp[i], c.flow_label[i], sids[i], slice_ids[i]),
            packets=round(c.packets[i] * rates[i]),
            bytes=round(c.octets[i] * rates[i]),
            start_ns=c.start_ms[i] * 1_000_000,
            end_ns=c.end_ms[i] * 1_000_000,
            sampling_rate=max(1, round(rates[i])),
            direction=c.direction[i],
            segments=tuple(address_text(s) for s in segments[i]),
        )
        for i in range(n)
    ]


def _protocol_of(data: bytes | memoryview) -> str | None:
    if len(data) >= 2 and data[0] == 0:
        if data[1] == 10:
            return "ipfix"
        if data[1] == 9:
            return "netflow9"
        if len(data) >= 4 and data[1] == 0 and data[2] == 0 and data[3] == 5:
            return "sflow"
    return None


def _bind(host: str, port: int) -> socket.socket:
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6 and host == "::":
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # 0.0.0.0 may be bound beside it
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
