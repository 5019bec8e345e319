"""HTTP beside /metrics: `GET /flows/top?slice=NAME&limit=N`, the slice's top talkers as JSON.

The endpoint is a WSGI app that answers its own path and hands every other request to
prometheus_client's /metrics app, so one port serves both. Answers:

    200 {"slice": "video", "limit": 10, "total_bytes": ..., "talkers":
         [{"address": "2001:db8::1", "bytes": 123, "error": 0}, ...]}
    400 {"error": "unknown slice 'x' (slices are: video, egov, data, best-effort)"}

`bytes` may overestimate by at most `error` (Space-Saving sketch, collector/traffic/counters.py).
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Protocol
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import CollectorRegistry

from collector.system.http_limits import DEFAULT_HTTP_LIMITS, RESPONSES_CUT_OFF, HttpLimits
from collector.traffic.classifier import SliceClassifier
from collector.traffic.counters import TrafficCounters

TOP_PATH = "/flows/top"
MAX_LIMIT = 1000


class TrafficSource(Protocol):
    """What the endpoint reads: the flow receiver, or the agent's packet captures."""

    classifier: SliceClassifier
    counters: TrafficCounters

    def reading(self) -> AbstractContextManager: ...


def top_talkers_answer(receiver: TrafficSource, query: str) -> tuple[int, dict]:
    """(HTTP status, JSON body) for the query string of a /flows/top request."""
    params = parse_qs(query)
    names = receiver.classifier.names
    slice_name = (params.get("slice") or [""])[0]
    if slice_name not in names:
        shown = f"unknown slice {slice_name!r}" if slice_name else "the slice parameter is missing"
        return 400, {"error": f"{shown} (slices are: {', '.join(names)})"}
    raw_limit = (params.get("limit") or ["10"])[0]
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
        return 400, {"error": f"limit must be a whole number from 1 to {MAX_LIMIT}, got {raw_limit!r}"}
    limit = int(raw_limit)
    with receiver.reading():
        talkers = receiver.counters.top_talkers(slice_name, limit)
        total = receiver.counters.by_slice().get(slice_name)
    return 200, {
        "slice": slice_name,
        "limit": limit,
        "total_bytes": total.bytes if total else 0,
        "talkers": [{"address": t.address, "bytes": t.bytes, "error": t.error} for t in talkers],
    }


def metrics_and_top_app(metrics_app: Callable, receiver: TrafficSource) -> Callable:
    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != TOP_PATH:
            return metrics_app(environ, start_response)
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET"), ("Content-Type", "application/json")])
            return [b'{"error": "only GET"}']
        status, body = top_talkers_answer(receiver, environ.get("QUERY_STRING", ""))
        text = json.dumps(body).encode()
        reason = "OK" if status == 200 else "Bad Request"
        start_response(f"{status} {reason}", [("Content-Type", "application/json"), ("Content-Length", str(len(text)))])
        return [text]

    return app


LINGER_NONE = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() resets and drops what is unsent


class _DeadlineWriter(io.BufferedIOBase):
    """The handler's output. Once the kernel's buffer is full (the client is not taking what
    was sent), the client must take the rest at `HttpLimits.send_time_s`, counted from that
    moment over what it took since; else the response is cut off: counted in
    RESPONSES_CUT_OFF, the connection set to reset on close, and ConnectionAbortedError
    raised, which wsgiref takes as a client gone. A plain sendall would wait for ever on a
    client that reads a byte a second, holding a thread and a connection slot."""

    def __init__(self, sock: socket.socket, limits: HttpLimits) -> None:
        self._sock = sock
        self._limits = limits
        self._waiting_since: float | None = None  # of the connection's one response (HTTP/1.0)
        self._taken_since = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        sent = 0
        while sent < len(view):
            if self._waiting_since is None:
                self._sock.settimeout(0)
            else:
                left = self._waiting_since + self._limits.send_time_s(self._taken_since) - time.monotonic()
                if left <= 0:
                    self._cut_off()
                self._sock.settimeout(left)
            try:
                taken = self._sock.send(view[sent:])
            except (BlockingIOError, TimeoutError):  # nothing taken
                taken = 0
            sent += taken
            if self._waiting_since is None:
                if sent < len(view):  # the kernel's buffer is full: from now on the client is timed
                    self._waiting_since = time.monotonic()
            else:
                self._taken_since += taken
        return sent

    def _cut_off(self) -> None:
        RESPONSES_CUT_OFF.add()
        with contextlib.suppress(OSError):
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_NONE)
        raise ConnectionAbortedError("the client did not read its response")

    def fileno(self) -> int:
        return self._sock.fileno()


class _GuardedHandler(WSGIRequestHandler):
    """One request per connection (HTTP/1.0, so no keep-alive to bound), whose request line
    and headers must arrive within the server's `header_timeout_s` (a client that dribbles
    them is cut off and its request never reaches the app), and whose response must be read
    at the server's send bounds (`_DeadlineWriter`)."""

    server: _GuardedServer

    def setup(self) -> None:
        super().setup()
        self.wfile = _DeadlineWriter(self.connection, self.server.limits)
        self._too_slow = False
        self._head_timer = threading.Timer(self.server.limits.header_timeout_s, self._cut_off)
        self._head_timer.daemon = True
        self._head_timer.start()

    def _cut_off(self) -> None:
        self._too_slow = True
        with contextlib.suppress(OSError):  # the client may have gone already
            self.connection.shutdown(socket.SHUT_RDWR)

    def parse_request(self) -> bool:
        parsed = super().parse_request()  # reads the headers
        self._head_timer.cancel()
        return parsed and not self._too_slow

    def finish(self) -> None:
        self._head_timer.cancel()
        with contextlib.suppress(OSError):  # a client cut off leaves nothing to flush to
            super().finish()

    def log_message(self, format: str, *args: object) -> None:  # scrapes are not news
        pass


class _GuardedServer(ThreadingWSGIServer):
    """A thread per connection, at most `limits.max_connections` at once: beyond, a new
    connection is closed at once (counted in `refused_total`) and those served go on."""

    limits: HttpLimits

    def server_activate(self) -> None:
        super().server_activate()
        self.refused_total = 0
        self._slots = threading.BoundedSemaphore(self.limits.max_connections)

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused_total += 1
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def serve_metrics_and_top(
    registry: CollectorRegistry,
    receiver: TrafficSource,
    listen: tuple[str, int],
    *,
    metrics_app: Callable | None = None,
) -> tuple[WSGIServer, threading.Thread]:
    """Serve /metrics (`metrics_app`, else prometheus_client's over `registry`) and
    /flows/top on HOST:PORT (IPv6 or IPv4) from a daemon thread."""
    return serve_wsgi(metrics_and_top_app(metrics_app or make_wsgi_app(registry), receiver), listen)


def serve_wsgi(
    app: Callable, listen: tuple[str, int], limits: HttpLimits = DEFAULT_HTTP_LIMITS
) -> tuple[WSGIServer, threading.Thread]:
    """Serve a WSGI app on HOST:PORT (IPv6 or IPv4, bracketed or not) from a daemon thread,
    every client held to `limits` (collector.system.http_limits)."""
    host, port = listen
    host = host.strip("[]")

    class Server(_GuardedServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    Server.limits = limits
    httpd = make_server(host, port, app, Server, handler_class=_GuardedHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    return httpd, thread
