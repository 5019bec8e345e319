"""The analyzer's API server against hostile clients, over real sockets: a slowloris client
that dribbles its headers is cut off at the head deadline while /healthz keeps answering, a
body that trickles in is answered 408 and cut off at the body deadline (and one trickling
after its request was refused is cut off too), an oversized head is refused, a request
whose head came in time is served however long its handler takes, and a client that reads a
big response a byte a second is cut off at the send deadline (counted) while /healthz answers
and a client that reads it at once gets all of it."""

from __future__ import annotations

import socket
import ssl

import httpx
from fastapi import FastAPI
from fastapi.responses import Response

from analyzer.api.app import create_app
from analyzer.api.guarded_h11 import uvicorn_options
from analyzer.service import ApiServer, TlsFiles
from analyzer.sla.verdicts import default_policies
from analyzer.store.memory import WindowStore
from collector.system.http_limits import DEFAULT_HTTP_LIMITS, RESPONSES_CUT_OFF, HttpLimits
from tests.api_support import AUTH, TOKEN, write_self_signed_cert
from tests.support import DEADLINE_S, dribble, dribble_until_cut_off, read_slowly


def analyzer_api(token: str | None = None) -> ApiServer:
    return ApiServer(create_app(WindowStore(default_policies()), token=token), ("::1", 0))


def windows_head(headers: dict[str, str], length: int) -> bytes:
    """The head of a POST /v1/windows announcing a body of `length` bytes."""
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (
        f"POST /v1/windows HTTP/1.1\r\nHost: analyzer\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n{lines}\r\n"
    ).encode()


def trickle_body(server: ApiServer, headers: dict[str, str]) -> tuple[float, bytes]:
    """Sends a POST's head, then its body one byte a second while /healthz must answer:
    how long the server let it trickle, and what it answered."""

    def healthz() -> None:
        assert httpx.get(f"{server.url}/healthz", timeout=DEADLINE_S).status_code == 200

    return dribble(server.address[:2], windows_head(headers, 4096), healthz, interval=1.0)


def test_a_client_dribbling_its_headers_is_cut_off_while_healthz_answers():
    with analyzer_api() as server:

        def healthz() -> None:
            assert httpx.get(f"{server.url}/healthz", timeout=DEADLINE_S).status_code == 200

        dribbled_s = dribble_until_cut_off(server.address[:2], healthz)
    assert dribbled_s >= DEFAULT_HTTP_LIMITS.header_timeout_s - 0.5


def test_a_body_trickling_in_is_answered_408_with_its_reason_and_cut_off_while_healthz_answers():
    with analyzer_api(TOKEN) as server:
        trickled_s, answer = trickle_body(server, AUTH)
    status_line, _, rest = answer.decode().partition("\r\n")
    assert status_line.startswith("HTTP/1.1 408 ")
    assert f"{DEFAULT_HTTP_LIMITS.min_body_rate} bytes/s" in rest and "connection: close" in rest.lower()
    assert DEFAULT_HTTP_LIMITS.body_grace_s - 0.5 <= trickled_s < DEFAULT_HTTP_LIMITS.body_grace_s + DEADLINE_S / 2


def test_a_body_trickling_after_its_request_was_refused_is_cut_off():
    """The answer (401: no token) went out before the body; the body may not hold the
    connection any longer than it could have before."""
    with analyzer_api(TOKEN) as server:
        trickled_s, answer = trickle_body(server, {})
    assert answer.startswith(b"HTTP/1.1 401 ") and b"missing bearer token" in answer
    assert trickled_s >= DEFAULT_HTTP_LIMITS.body_grace_s - 0.5


def test_a_head_beyond_the_bound_is_refused():
    with analyzer_api() as server, socket.create_connection(server.address[:2], timeout=DEADLINE_S) as greedy:
        greedy.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: analyzer\r\nX-Big: " + b"a" * DEFAULT_HTTP_LIMITS.max_header_bytes
        )
        assert greedy.recv(1024).startswith(b"HTTP/1.1 400 ")  # before the head ever ends
        assert httpx.get(f"{server.url}/healthz", timeout=DEADLINE_S).status_code == 200


BIG = 16 << 20  # beyond what the kernel's buffers on both ends take: the rest waits in the server


def big_response_api(tls: TlsFiles | None = None) -> ApiServer:
    app = FastAPI()
    big = b"m" * BIG

    @app.get("/big")
    def whole() -> Response:
        return Response(big, media_type="text/plain")

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    return ApiServer(app, ("::1", 0), tls=tls)


def test_a_client_reading_a_big_response_a_byte_a_second_is_cut_off_and_counted_while_healthz_answers():
    cut_before = RESPONSES_CUT_OFF.total
    with big_response_api() as server:

        def healthz() -> None:
            assert httpx.get(f"{server.url}/healthz", timeout=DEADLINE_S).status_code == 200

        read_s, got = read_slowly(server.address[:2], b"GET /big HTTP/1.1\r\nHost: analyzer\r\n\r\n", healthz)
        assert RESPONSES_CUT_OFF.total == cut_before + 1
        assert len(httpx.get(f"{server.url}/big", timeout=DEADLINE_S).content) == BIG  # a reader that keeps up
        healthz()
    assert got < BIG
    assert DEFAULT_HTTP_LIMITS.send_grace_s - 1 <= read_s < DEFAULT_HTTP_LIMITS.send_grace_s + DEADLINE_S / 2
    assert RESPONSES_CUT_OFF.total == cut_before + 1


def test_a_client_reading_a_big_response_a_byte_a_second_over_tls_is_cut_off_too(tmp_path):
    cert, key = write_self_signed_cert(tmp_path)
    trusted = ssl.create_default_context(cafile=str(cert))
    cut_before = RESPONSES_CUT_OFF.total
    with big_response_api(TlsFiles(cert, key)) as server:

        def healthz() -> None:
            assert httpx.get(f"{server.url}/healthz", verify=trusted, timeout=DEADLINE_S).status_code == 200

        request = b"GET /big HTTP/1.1\r\nHost: analyzer\r\n\r\n"
        read_s, got = read_slowly(server.address[:2], request, healthz, tls=trusted)
        assert RESPONSES_CUT_OFF.total == cut_before + 1
        assert len(httpx.get(f"{server.url}/big", verify=trusted, timeout=DEADLINE_S).content) == BIG
    assert got < BIG and read_s >= DEFAULT_HTTP_LIMITS.send_grace_s - 1


def test_the_options_carry_every_limit():
    limits = HttpLimits(
        header_timeout_s=3, keep_alive_s=2, max_connections=7, max_header_bytes=4096, body_grace_s=4, min_body_rate=99
    )
    options = uvicorn_options(limits)
    assert options["http"].limits == limits
    assert (options["timeout_keep_alive"], options["limit_concurrency"]) == (2, 7)
    assert options["h11_max_incomplete_event_size"] == 4096
