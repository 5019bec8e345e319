"""uvicorn's h11 protocol with deadlines on a request's head and on its body, and the uvicorn
settings of `collector.system.http_limits.HttpLimits`.

uvicorn closes a connection idle between requests (`timeout_keep_alive`) but waits forever
for a request line and headers that come a byte at a time, and for a body that does: a few
hundred such clients hold every connection the concurrency limit allows, and /healthz then
answers 503. Here a connection whose head has not fully arrived `header_timeout_s` after it
opened, or after its previous response, is closed; a body that falls behind
`HttpLimits.body_time_s` is answered 408 (or, when the answer already went out, as when the
token was refused before the body, just cut off) and its connection closed.

On the way out asyncio buffers whatever the kernel does not take, without limit and for as
long as the client does not read: a client that asks for /metrics and reads it a byte a
second would hold its connection and the whole buffered response for ever (and, in numbers,
every connection). So writing pauses as soon as anything waits in the buffer, and while it
waits the client must take it at `HttpLimits.send_time_s`; one that falls behind has its
connection aborted, the buffer dropped and the cut counted in `RESPONSES_CUT_OFF`.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from collector.system.http_limits import DEFAULT_HTTP_LIMITS, RESPONSES_CUT_OFF, HttpLimits

LINGER_NONE = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() resets and drops what is unsent


class GuardedH11Protocol(H11Protocol):
    limits = DEFAULT_HTTP_LIMITS  # set per server by `uvicorn_options`
    _head_deadline: asyncio.TimerHandle | None = None
    _body_deadline: asyncio.TimerHandle | None = None
    _send_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # Paused (and timed) as soon as a byte waits: the app's next send waits for the client.
        transport.set_write_buffer_limits(high=1, low=0)  # high=0 would pause a TLS transport while empty
        self._body_started = 0.0
        self._body_received = 0
        self._send_started = 0.0
        self._send_backlog = 0
        self._arm_head_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the request's head is in
            self._head_deadline = _cancelled(self._head_deadline)
        if self._body_deadline is not None:
            self._body_received += len(data)
        self._watch_body()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state in (h11.IDLE, h11.DONE):
            self._arm_head_deadline()  # the next request's head, if any, is timed afresh
        self._watch_body()  # a pipelined request's head may have been read just now

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_deadline = _cancelled(self._head_deadline)
        self._body_deadline = _cancelled(self._body_deadline)
        self._send_deadline = _cancelled(self._send_deadline)
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._send_deadline is None:
            self._send_started = self.loop.time()
            self._send_backlog = self.transport.get_write_buffer_size()
            self._send_deadline = self.loop.call_at(self._send_due(), self._send_too_slow)

    def resume_writing(self) -> None:
        super().resume_writing()  # the buffer is empty: the client took all it was given
        self._send_deadline = _cancelled(self._send_deadline)

    def _send_due(self) -> float:
        waiting = self.transport.get_write_buffer_size()
        self._send_backlog = max(self._send_backlog, waiting)  # the end of a response may join
        return self._send_started + self.limits.send_time_s(self._send_backlog - waiting)

    def _send_too_slow(self) -> None:
        """Also when the connection is closing: a close waits for the buffer to be sent."""
        self._send_deadline = None
        if self.transport.get_write_buffer_size() == 0:
            return
        if self.loop.time() < self._send_due():  # what the client took bought more time
            self._send_deadline = self.loop.call_at(self._send_due(), self._send_too_slow)
            return
        RESPONSES_CUT_OFF.add()
        if self.cycle is not None:
            self.cycle.disconnected = True  # the app's send() now writes nothing
        sock = self.transport.get_extra_info("socket")
        if sock is not None:  # a reset, not a FIN behind what the kernel still holds for the client
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_NONE)
        self.transport.abort()  # the buffered response goes; connection_lost follows

    def _arm_head_deadline(self) -> None:
        _cancelled(self._head_deadline)
        self._head_deadline = self.loop.call_later(self.limits.header_timeout_s, self._head_too_slow)

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()

    def _watch_body(self) -> None:
        """Times a body from its head on (the octets that came with the head count for
        nothing: they were no wait), and stops once it has all come in."""
        if self.conn.their_state is not h11.SEND_BODY:
            self._body_deadline = _cancelled(self._body_deadline)
        elif self._body_deadline is None and not self.transport.is_closing():
            self._body_started, self._body_received = self.loop.time(), 0
            self._body_deadline = self.loop.call_at(self._body_due(), self._body_too_slow)

    def _body_due(self) -> float:
        return self._body_started + self.limits.body_time_s(self._body_received)

    def _body_too_slow(self) -> None:
        self._body_deadline = None
        if self.conn.their_state is not h11.SEND_BODY or self.transport.is_closing():
            return
        if self.loop.time() < self._body_due():  # what came since the deadline was set bought more time
            self._body_deadline = self.loop.call_at(self._body_due(), self._body_too_slow)
            return
        cycle = self.cycle
        if cycle is not None:
            if not cycle.response_started:
                self._answer_408()
            cycle.disconnected = True  # the app's receive() now says so; its send() writes nothing
            cycle.message_event.set()
        self.transport.close()

    def _answer_408(self) -> None:
        limits = self.limits
        reason = (
            f"the request body came in slower than {limits.min_body_rate} bytes/s after a grace of "
            f"{limits.body_grace_s:g} s: send it at once"
        )
        body = json.dumps({"detail": reason}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        for event in (h11.Response(status_code=408, headers=headers), h11.Data(data=body), h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))


def _cancelled(deadline: asyncio.TimerHandle | None) -> asyncio.TimerHandle | None:
    """Cancels `deadline` if there is one; None, for the attribute that held it."""
    if deadline is not None:
        deadline.cancel()
    return None


def uvicorn_options(limits: HttpLimits = DEFAULT_HTTP_LIMITS) -> dict[str, Any]:
    """uvicorn.Config keyword arguments that hold clients to `limits`."""
    protocol = type("GuardedH11", (GuardedH11Protocol,), {"limits": limits})
    return {
        "http": protocol,
        "timeout_keep_alive": limits.keep_alive_s,
        "limit_concurrency": limits.max_connections,
        "h11_max_incomplete_event_size": limits.max_header_bytes,
    }
