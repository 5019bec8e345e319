"""The agent's packet captures (the `capture:` section): one thread per interface.

Each interface is a `LiveCapture` (AF_PACKET, 1:N random sampling) wired as `xnetmon capture
live` wires it (`collector.capture.points`). Its flow records go into the agent's
`TrafficCounters` as exporter "capture:IFACE", the counters the flow receiver feeds when the
agent has one (same lock, same classifier, so one /flows/top and one set of xnet_flow_*
series serve both). Its counters (`capture_stats`) and its passive TCP RTT and alternate-marking meters
(`meters`) are rendered by `collector.outputs.prometheus`; undecodable packets go to the
agent's one malformed-packets family.

A capture's packets reach the counters when its flow record ends, so `active_timeout_s`
bounds how late /metrics is for a long flow. SIGHUP: interfaces whose settings changed are
restarted (their meters start again from zero), removed ones stopped, new ones started.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from collector.capture.altmark import MarkingPoint
from collector.capture.live import CaptureStats, LiveCapture
from collector.capture.points import CaptureMeters, CaptureOptions, open_live_capture
from collector.capture.tcp_rtt import PassiveTcpRtt
from collector.contract.marked_blocks import MarkedBlock
from collector.contract.records import FlowRecord
from collector.traffic.classifier import SliceClassifier
from collector.traffic.counters import TrafficCounters, TrafficTotals

log = logging.getLogger(__name__)

JOIN_TIMEOUT_S = 5.0  # a capture notices stop() within its 1 s expiry tick
RESTART_PAUSE_S = 1.0  # before a capture that failed runs again


class CaptureError(RuntimeError):
    """An interface that cannot be captured (missing, or no CAP_NET_RAW)."""


@dataclass(frozen=True, slots=True)
class InterfaceCapture:
    """One entry of the `capture.interfaces` list."""

    interface: str
    sample: int = 1
    tcp_rtt: bool = False
    altmark_point: str | None = None
    active_timeout_s: float = 60.0
    idle_timeout_s: float = 15.0

    @property
    def exporter(self) -> str:
        return f"capture:{self.interface}"

    def options(self) -> CaptureOptions:
        return CaptureOptions(
            sampling_rate=self.sample,
            tcp_rtt=self.tcp_rtt,
            altmark_point=self.altmark_point,
            active_timeout_s=self.active_timeout_s,
            idle_timeout_s=self.idle_timeout_s,
        )


@dataclass(frozen=True)
class CaptureSettings:
    interfaces: tuple[InterfaceCapture, ...]
    classifier: SliceClassifier  # from capture.slices, else the slices section's DSCPs
    rules_source: str  # how packets are classified, in words, for --check


class _Running:
    """One interface's capture and its thread."""

    def __init__(self, settings: InterfaceCapture, capture: LiveCapture, meters: CaptureMeters, deliver) -> None:
        self.settings = settings
        self.capture = capture
        self.meters = meters
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(deliver,), name=settings.exporter, daemon=True)

    def _run(self, deliver) -> None:
        """The capture until stop(); an error it did not handle itself is counted in its
        `errors` and the capture runs again after a pause, so the thread never ends early."""
        try:
            while True:
                try:
                    self.capture.run(on_records=deliver)
                    return  # stopped
                except Exception:
                    self.capture.stats.errors += 1
                    log.exception("capture on %s failed; starting it again", self.settings.interface)
                if self.stopped.wait(RESTART_PAUSE_S):
                    return
        finally:
            self.capture.close()


def _stop_all(running: list[_Running]) -> None:
    """Ask every capture to stop, then wait: they notice within one poll tick together."""
    for r in running:
        r.stopped.set()
        r.capture.stop()
    for r in running:
        r.thread.join(JOIN_TIMEOUT_S)


class AgentCaptures:
    """Every configured interface capture, feeding `counters` under `lock`."""

    def __init__(
        self, settings: CaptureSettings, counters: TrafficCounters | None = None, lock: threading.Lock | None = None
    ) -> None:
        self.settings = settings
        self.classifier = settings.classifier
        self.counters = counters if counters is not None else TrafficCounters()
        self.lock = lock if lock is not None else threading.Lock()
        self._running: dict[str, _Running] = {}
        self._changing = threading.Lock()  # one reload or stop at a time

    # -- running ---------------------------------------------------------------------------

    def start(self) -> AgentCaptures:
        """Open and start every interface; CaptureError (nothing left running) if one cannot be."""
        try:
            for entry in self.settings.interfaces:
                self._start(entry)
        except CaptureError:
            self.stop()
            raise
        return self

    def _start(self, entry: InterfaceCapture) -> None:
        try:
            capture, meters = open_live_capture(entry.interface, self.classifier, entry.options())
        except PermissionError:
            raise CaptureError(f"capture on {entry.interface}: needs root (CAP_NET_RAW)") from None
        except OSError as exc:
            raise CaptureError(f"capture on {entry.interface}: {exc.strerror or exc}") from None
        running = _Running(entry, capture, meters, self._deliver)
        self._running[entry.interface] = running
        running.thread.start()

    def _deliver(self, records: list[FlowRecord]) -> None:
        with self.lock:
            for record in records:
                self.counters.add(record)

    def reload(self, settings: CaptureSettings | None) -> threading.Thread:
        """Apply a new section's interfaces (None: stop them all), in a thread of its own:
        a capture takes up to a poll tick (1 s) to stop, which the agent's event loop must
        not wait for. A replaced capture stops before its successor opens, so no packet is
        counted twice. The classifier stays the one the agent started with: the flow
        receiver shares it and is not reloaded."""
        thread = threading.Thread(target=self._apply, args=(settings,), name="capture-reload", daemon=True)
        thread.start()
        return thread

    def _apply(self, settings: CaptureSettings | None) -> None:
        wanted = {entry.interface: entry for entry in (settings.interfaces if settings else ())}
        with self._changing:
            changed = [r for name, r in self._running.items() if wanted.get(name) != r.settings]
            _stop_all(changed)
            for r in changed:
                del self._running[r.settings.interface]
            for name, entry in wanted.items():
                if name not in self._running:
                    try:
                        self._start(entry)
                    except CaptureError as exc:
                        log.error("%s; the other captures go on", exc)
            if settings is not None:
                self.settings = CaptureSettings(settings.interfaces, self.classifier, self.settings.rules_source)

    def stop(self) -> None:
        with self._changing:
            _stop_all(list(self._running.values()))
            self._running = {}

    # -- reading (scrapes, /flows/top) -----------------------------------------------------

    @contextmanager
    def reading(self) -> Iterator[AgentCaptures]:
        with self.lock:
            yield self

    def totals(self) -> dict[tuple[str, str, str], TrafficTotals]:
        with self.lock:
            return self.counters.totals()

    def sampling_rates(self) -> dict[str, float]:
        return {r.settings.exporter: float(r.settings.sample) for r in list(self._running.values())}

    def malformed_counts(self) -> list[tuple[tuple[str, str], int]]:
        """(protocol, kind) -> packets, summed over the interfaces: "pcap" for packets the
        dissector refused, "tcp" and "altmark" for those the meters could not read."""
        counts: dict[tuple[str, str], int] = {}
        for running in list(self._running.values()):
            for kind, count in dict(running.capture.stats.malformed).items():
                counts[("pcap", kind)] = counts.get(("pcap", kind), 0) + count
            for protocol, meter in (("tcp", running.meters.tcp_rtt), ("altmark", running.meters.marking)):
                if meter is not None and meter.malformed:
                    counts[(protocol, "undecodable")] = counts.get((protocol, "undecodable"), 0) + meter.malformed
        return sorted(counts.items())

    def capture_stats(self) -> list[tuple[str, CaptureStats]]:
        """(exporter, counters) of every running capture, by interface."""
        running = sorted(self._running.values(), key=lambda r: r.settings.interface)
        return [(r.settings.exporter, r.capture.stats) for r in running]

    def meters(self) -> tuple[list[PassiveTcpRtt], list[MarkingPoint]]:
        """The passive TCP RTT meters and alternate-marking points of the running captures."""
        running = list(self._running.values())
        tcp = [r.meters.tcp_rtt for r in running if r.meters.tcp_rtt is not None]
        points: list[MarkingPoint] = [r.meters.marking for r in running if r.meters.marking is not None]
        return tcp, points

    def marked_blocks(self, site: str) -> list[MarkedBlock]:
        """Alternate-marking blocks the counting points finished since the last call, to ship."""
        return [
            block
            for r in list(self._running.values())
            if r.meters.marking is not None
            for block in r.meters.marking.take_final(site, time.time_ns())
        ]
