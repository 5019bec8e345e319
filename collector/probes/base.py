"""What the agent's scheduler asks of a probe kind: the `Prober` protocol.

A probe is one request sent to one target per tick. The scheduler owns the ticks (spreading,
lag, reloads) and the per-path windows; a prober owns its sockets and sessions, and hands
every result it settles to the handler of the schedule it belongs to. The scheduler never
names a kind: it finds the prober of a planned probe in `collector.probes.registry`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

from collector.contract.records import ProbeResult, Slice, Target
from collector.system.clock import ClockStatus

ResultHandler = Callable[[ProbeResult], None]


@dataclass(frozen=True, slots=True)
class ProberContext:
    """Where a prober runs: one site's agent."""

    source_address: str | None  # the site's probe source; None: the kernel chooses
    clock: ClockStatus  # how far the host clock may be off, for timestamps that say so
    # probes of a slice with a slice ID carry it in a Hop-by-Hop option of this type
    # (collector.wire.slice_option); None: they carry none
    slice_option_type: int | None = None


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    """One schedule as its prober sees it: whom to probe, in which slice, how."""

    target: Target
    slice: Slice
    size: int | None  # payload octets; None: the kind's smallest
    flow_label: int | None
    timeout_ns: int


class ProbeTarget(Protocol):
    """One schedule's share of its prober, probed once per tick."""

    def send(self, now_ns: int) -> None:
        """Send the next request now."""

    def stop(self) -> None:
        """No more requests: settle what the kind can settle now, then forget the target."""


@runtime_checkable
class Prober(Protocol):
    """One probe kind at one site, shared by every schedule of that kind."""

    kind: ClassVar[str]  # its name in configurations, PathKey.kind and metric labels
    title: ClassVar[str]  # its name in messages
    minimum_size: ClassVar[int]  # payload octets every request carries before padding
    uses_port: ClassVar[bool]  # whether a target's port means anything to it

    def __init__(self, context: ProberContext) -> None: ...

    @property
    def send_errors(self) -> int: ...

    @property
    def receive_errors(self) -> int:
        """Replies that matched nothing of ours, or did not parse."""

    def add(self, spec: ProbeSpec, on_result: ResultHandler) -> ProbeTarget:
        """Start probing a target (opening sockets as needed); its results go to `on_result`."""

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Read replies on `loop` from now on."""

    def detach(self, loop: asyncio.AbstractEventLoop) -> None: ...

    def expire(self, now_ns: int) -> None:
        """Settle requests that timed out; called every housekeeping tick."""

    def flush(self) -> None:
        """At shutdown: settle every outstanding request, as lost when unanswered."""

    def close(self) -> None: ...
