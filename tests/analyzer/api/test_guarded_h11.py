"""The analyzer's API server against hostile clients, over real sockets: a slowloris client
that dribbles its headers is cut off at the head deadline while /healthz keeps answering, an
oversized head is refused, and a request whose head came in time is served however long
its handler takes."""

from __future__ import annotations

import socket

import httpx

from analyzer.api.app import create_app
from analyzer.api.guarded_h11 import uvicorn_options
from analyzer.service import ApiServer
from analyzer.sla.verdicts import default_policies
from analyzer.store.memory import WindowStore
from collector.system.http_limits import DEFAULT_HTTP_LIMITS, HttpLimits
from tests.support import DEADLINE_S, dribble_until_cut_off


def analyzer_api() -> ApiServer:
    return ApiServer(create_app(WindowStore(default_policies()), token=None), ("::1", 0))


def test_a_client_dribbling_its_headers_is_cut_off_while_healthz_answers():
    with analyzer_api() as server:

        def healthz() -> None:
            assert httpx.get(f"{server.url}/healthz", timeout=DEADLINE_S).status_code == 200

        dribbled_s = dribble_until_cut_off(server.address[:2], healthz)
    assert dribbled_s >= DEFAULT_HTTP_LIMITS.header_timeout_s - 0.5


def test_a_head_beyond_the_bound_is_refused():
    with analyzer_api() as server, socket.create_connection(server.address[:2], timeout=DEADLINE_S) as greedy:
        greedy.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: analyzer\r\nX-Big: " + b"a" * DEFAULT_HTTP_LIMITS.max_header_bytes
        )
        assert greedy.recv(1024).startswith(b"HTTP/1.1 400 ")  # before the head ever ends
        assert httpx.get(f"{server.url}/healthz", timeout=DEADLINE_S).status_code == 200


def test_the_options_carry_every_limit():
    limits = HttpLimits(header_timeout_s=3, keep_alive_s=2, max_connections=7, max_header_bytes=4096)
    options = uvicorn_options(limits)
    assert options["http"].header_timeout_s == 3
    assert (options["timeout_keep_alive"], options["limit_concurrency"]) == (2, 7)
    assert options["h11_max_incomplete_event_size"] == 4096
