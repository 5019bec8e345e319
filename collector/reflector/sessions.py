"""The reflector's sessions in two bounded tiers, so that strangers cannot push out real ones.

A session (RFC 8972 section 3: the sender's address and port with the SSID) starts on
probation. It is established once it has sent `confirm_after` requests, or at once when
its request was authenticated (nobody without the key can make one). Spoofed requests
therefore fill probation only, where the oldest session goes first. An established
session makes room only by falling idle for `idle_ns`; while the established tier is full
of active sessions, a newcomer stays on probation: still answered, but evictable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from collector.reflector.replay import ReplayWindow
from collector.wire.stamp_reflect import SessionCounters

ROOM_SCAN = 4  # established sessions looked at for an idle one: bounds the work per promotion


@dataclass(slots=True, eq=False)
class Session:
    """A session's counters, its replay window, and its reply that waits for T3 in the current burst.

    `stamp_transmit_time` gives a reply its number as it writes T3, so a session's next
    request may be rewritten only once the reply before it is stamped; a lean stateful reply
    takes its number as it is rewritten (`waiting_numbered`) and its T3 with its burst."""

    counters: SessionCounters = field(default_factory=SessionCounters)
    replay: ReplayWindow = field(default_factory=ReplayWindow)
    waiting: Any = None  # the buffer (bytearray or batch slot) of the reply not stamped yet
    waiting_length: int = 0
    waiting_numbered: bool = False  # the waiting reply took its number already (lean stateful)
    requests: int = 0  # while on probation
    last_ns: int = 0


@dataclass(frozen=True, slots=True)
class SessionLimits:
    max_established: int = 100_000
    max_probation: int = 50_000
    confirm_after: int = 3  # requests that establish an unauthenticated session
    idle_ns: int = 600 * 1_000_000_000  # an established session idle this long may give way

    def __post_init__(self) -> None:
        for name in ("max_established", "max_probation", "confirm_after"):
            if not 1 <= getattr(self, name) <= 10_000_000:
                raise ValueError(f"{name}: expected 1..10000000, got {getattr(self, name)}")
        if self.idle_ns <= 0:
            raise ValueError(f"session idle time: expected > 0, got {self.idle_ns} ns")


class SessionTable:
    """Written by the reflector's thread alone."""

    def __init__(self, limits: SessionLimits) -> None:
        self.limits = limits
        self._established: dict[tuple, Session] = {}
        self._probation: dict[tuple, Session] = {}
        self.evicted_probation = 0
        self.evicted_idle = 0

    def get(self, key: tuple, now_ns: int, authenticated: bool) -> Session:
        """The session of `key`, made (on probation) if new; `authenticated`: its request verified."""
        session = self._established.get(key)
        if session is not None:
            session.last_ns = now_ns
            return session
        probation = self._probation
        session = probation.get(key)
        if session is None:
            if len(probation) >= self.limits.max_probation:
                del probation[next(iter(probation))]
                self.evicted_probation += 1
            session = probation[key] = Session()
        session.requests += 1
        session.last_ns = now_ns
        if (authenticated or session.requests >= self.limits.confirm_after) and self._room(now_ns):
            del probation[key]
            self._established[key] = session
        return session

    def _room(self, now_ns: int) -> bool:
        established = self._established
        if len(established) < self.limits.max_established:
            return True
        for _ in range(ROOM_SCAN):
            oldest_key = next(iter(established))
            oldest = established.pop(oldest_key)
            if now_ns - oldest.last_ns > self.limits.idle_ns:
                self.evicted_idle += 1
                return True
            established[oldest_key] = oldest  # active: to the back of the line
        return False

    def __len__(self) -> int:
        return len(self._established) + len(self._probation)

    @property
    def established(self) -> int:
        return len(self._established)
