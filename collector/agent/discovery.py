"""Path discovery for the agent: which hops each (target, slice) crosses, and when that changes.

A Paris trace per (target, slice) at start, again every `period_s`, and early when a window
shows the path moved: the hop limit a request arrives with (or its reply) changed, or the
previous trace's fingerprint is not the one just seen. Traces run one at a time so that
discovery never competes with the probes it explains.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from collector.agent.plan import PlannedProbe
from collector.contract.records import PathObservation, PathWindow
from collector.probes.trace import TraceEndpoint, trace
from collector.probes.trace_session import TraceSettings
from collector.system.loop_errors import LoopErrors

log = logging.getLogger(__name__)

ObservationHandler = Callable[[PathObservation], None]


@dataclass(slots=True)
class _Path:
    target: str
    address: str
    slice: str
    dscp: int
    flow_label: int | None
    next_due_ns: int
    # Per probe kind: a STAMP reply and an echo reply start with different hop limits.
    hop_limits: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)
    fingerprint: str | None = None


class PathDiscovery:
    def __init__(
        self,
        probes: Sequence[PlannedProbe],
        period_s: float,
        protocol: str,
        on_observation: ObservationHandler,
        source: str | None = None,
        errors: LoopErrors | None = None,
    ) -> None:
        self.errors = errors if errors is not None else LoopErrors()
        self.period_ns = int(period_s * 1e9)
        self.protocol = protocol
        self.on_observation = on_observation
        self.source = source
        self.traces_run = 0
        self.trace_failures = 0
        self._paths: dict[tuple[str, str], _Path] = {}
        self.update(probes)
        self._wake = asyncio.Event()

    def update(self, probes: Sequence[PlannedProbe]) -> None:
        """Follow a new plan: new (target, slice) pairs are traced soon, gone ones forgotten."""
        now = time.time_ns()
        wanted = {}
        for p in probes:
            if ":" in p.target.address:  # Paris traceroute here is IPv6
                wanted[(p.target.name, p.slice.name)] = p
        for key in [k for k in self._paths if k not in wanted]:
            del self._paths[key]
        for i, (key, p) in enumerate(sorted(wanted.items())):
            if key not in self._paths:
                self._paths[key] = _Path(
                    p.target.name, p.target.address, p.slice.name, p.slice.dscp, p.flow_label, now + i * 50_000_000
                )

    def note_windows(self, windows: Sequence[PathWindow]) -> None:
        """A changed hop limit on a path means the path changed: trace it again now."""
        for w in windows:
            path = self._paths.get((w.key.target, w.key.slice))
            if path is None or w.received == 0:
                continue
            seen = (w.reflector_hop_limit, w.reply_hop_limit)
            before = path.hop_limits.get(w.key.kind)
            if before is not None and seen != before:
                log.info(
                    "hop limits to %s in %s (%s) changed %s -> %s: tracing again",
                    path.target,
                    path.slice,
                    w.key.kind,
                    before,
                    seen,
                )
                path.next_due_ns = 0
                self._wake.set()
            path.hop_limits[w.key.kind] = seen

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            now = time.time_ns()
            due = [p for p in self._paths.values() if p.next_due_ns <= now]
            if due:
                path = min(due, key=lambda p: p.next_due_ns)
                with self.errors.survive("discovery", f"tracing {path.target} in {path.slice}"):
                    await self._trace(path)
                path.next_due_ns = time.time_ns() + self.period_ns
                continue
            wait_ns = min((p.next_due_ns for p in self._paths.values()), default=now + self.period_ns) - now
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), max(0.01, min(wait_ns / 1e9, 1.0)))
            except TimeoutError:
                pass

    async def _trace(self, path: _Path) -> None:
        settings = TraceSettings(
            path.target,
            path.slice,
            dscp=path.dscp,
            protocol=self.protocol,
            probes_per_hop=1,
            max_hops=32,
            timeout_ns=500_000_000,
        )
        try:
            [result] = await trace(
                settings, TraceEndpoint(path.address, source=self.source), flow_label=path.flow_label
            )
        except (OSError, ValueError) as exc:
            self.trace_failures += 1
            log.warning("trace to %s in %s failed: %s", path.target, path.slice, exc)
            return
        self.traces_run += 1
        observation = result.observation
        if path.fingerprint is not None and observation.fingerprint != path.fingerprint:
            log.info(
                "path to %s in %s changed: %s -> %s", path.target, path.slice, path.fingerprint, observation.fingerprint
            )
        path.fingerprint = observation.fingerprint
        self.on_observation(observation)
