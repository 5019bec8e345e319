"""HTTP beside /metrics: `GET /flows/top?slice=NAME&limit=N`, the slice's top talkers as JSON.

The endpoint is a WSGI app that answers its own path and hands every other request to
prometheus_client's /metrics app, so one port serves both. Answers:

    200 {"slice": "video", "limit": 10, "total_bytes": ..., "talkers":
         [{"address": "2001:db8::1", "bytes": 123, "error": 0}, ...]}
    400 {"error": "unknown slice 'x' (slices are: video, egov, data, best-effort)"}

`bytes` may overestimate by at most `error` (Space-Saving sketch, collector/traffic/counters.py).
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Protocol
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import CollectorRegistry

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


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # scrapes are not news
        pass


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


def serve_wsgi(app: Callable, listen: tuple[str, int]) -> tuple[WSGIServer, threading.Thread]:
    """Serve a WSGI app on HOST:PORT (IPv6 or IPv4, bracketed or not) from a daemon thread."""
    host, port = listen
    host = host.strip("[]")

    class Server(ThreadingWSGIServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    httpd = make_server(host, port, app, Server, handler_class=_QuietHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    return httpd, thread
