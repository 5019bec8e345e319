"""uvicorn's h11 protocol with a deadline on a request's head, and the uvicorn settings of
`collector.system.http_limits.HttpLimits`.

uvicorn closes a connection idle between requests (`timeout_keep_alive`) but waits forever
for a request line and headers that come a byte at a time: a few hundred such clients hold
every connection the concurrency limit allows, and /healthz then answers 503. Here a
connection whose head has not fully arrived `header_timeout_s` after it opened, or after its
previous response, is closed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from collector.system.http_limits import DEFAULT_HTTP_LIMITS, HttpLimits


class GuardedH11Protocol(H11Protocol):
    header_timeout_s = 10.0  # set per server by `uvicorn_options`

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_deadline: asyncio.TimerHandle | None = None
        self._arm_head_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the request's head is in: its body may take its time
            self._disarm_head_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state in (h11.IDLE, h11.DONE):
            self._arm_head_deadline()  # the next request's head, if any, is timed afresh

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def _arm_head_deadline(self) -> None:
        self._disarm_head_deadline()
        self._head_deadline = self.loop.call_later(self.header_timeout_s, self._head_too_slow)

    def _disarm_head_deadline(self) -> None:
        if getattr(self, "_head_deadline", None) is not None:
            self._head_deadline.cancel()  # type: ignore[union-attr]
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def uvicorn_options(limits: HttpLimits = DEFAULT_HTTP_LIMITS) -> dict[str, Any]:
    """uvicorn.Config keyword arguments that hold clients to `limits`."""
    protocol = type("GuardedH11", (GuardedH11Protocol,), {"header_timeout_s": limits.header_timeout_s})
    return {
        "http": protocol,
        "timeout_keep_alive": limits.keep_alive_s,
        "limit_concurrency": limits.max_connections,
        "h11_max_incomplete_event_size": limits.max_header_bytes,
    }
