"""Bounded bodies (analyzer.api.bodies): every write checks the token before it reads a byte of
the body, and refuses a body over its limit while it streams in. Over a real socket to uvicorn,
so that "not read" means the server answered while the body was still unsent."""

from __future__ import annotations

import socket

import pytest

from analyzer.api.app import create_app
from analyzer.api.routes.probe import MAX_PROBE_BODY_BYTES
from analyzer.service import ApiServer
from analyzer.sla.verdicts import default_policies
from analyzer.store.memory import WindowStore
from tests.api_support import AUTH, TOKEN, Api
from tests.support import DEADLINE_S, wait_until

HUGE = 200 << 20  # 200 MiB announced, never sent


def answer_before_body(server: ApiServer, path: str, headers: dict[str, str], length: int = HUGE) -> tuple[int, str]:
    """Send only the head of a POST announcing `length` bytes; the status line and the body the
    server answers with, which it must give without waiting for the announced body."""
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (
        f"POST {path} HTTP/1.1\r\nHost: analyzer\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n{head}\r\n"
    )
    with socket.create_connection(server.address[:2], timeout=DEADLINE_S) as conn:
        conn.sendall(request.encode())
        received = b""
        while b"\r\n\r\n" not in received or not received.rstrip().endswith(b"}"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            received += chunk
    status_line, _, rest = received.decode().partition("\r\n")
    return int(status_line.split()[1]), rest.partition("\r\n\r\n")[2]


@pytest.fixture
def server():
    app = create_app(WindowStore(default_policies()), token=TOKEN, prober=lambda request: {})
    with ApiServer(app, ("::1", 0)) as running:
        yield running


@pytest.mark.parametrize("path", ["/v1/windows", "/probe"])
def test_an_anonymous_huge_body_is_refused_401_without_being_read(server, path):
    status, body = answer_before_body(server, path, {})
    assert status == 401 and "missing bearer token" in body


@pytest.mark.parametrize("path", ["/v1/windows", "/probe"])
def test_a_wrong_token_is_refused_401_without_reading_the_body(server, path):
    status, body = answer_before_body(server, path, {"Authorization": "Bearer nope"})
    assert status == 401 and "wrong bearer token" in body


@pytest.mark.parametrize("path", ["/v1/windows", "/probe"])
def test_a_body_announced_over_the_limit_is_refused_413_without_being_read(server, path):
    status, body = answer_before_body(server, path, AUTH)
    assert status == 413 and "over the limit" in body


def test_a_probe_body_over_its_limit_is_refused_while_it_streams():
    api = Api(prober=lambda request: {})

    async def chunks():  # no Content-Length: the limit must hold on what actually arrives
        yield b'{"agent": "cnty1a", "pad": "'
        for _ in range(MAX_PROBE_BODY_BYTES // 1000 + 2):
            yield b"x" * 1000
        yield b'"}'

    response = api.post("/probe", content=chunks(), headers=AUTH)
    assert (
        response.status_code == 413 and f"over the limit of {MAX_PROBE_BODY_BYTES} bytes" in response.json()["detail"]
    )


def test_a_client_gone_before_its_body_ended_is_a_refused_shipment_not_a_server_error(caplog):
    store = WindowStore(default_policies())
    with ApiServer(create_app(store, token=TOKEN), ("::1", 0)) as server:
        with socket.create_connection(server.address[:2], timeout=DEADLINE_S) as conn:
            head = f"POST /v1/windows HTTP/1.1\r\nHost: analyzer\r\nAuthorization: Bearer {TOKEN}\r\n"
            conn.sendall(f"{head}Content-Type: application/json\r\nContent-Length: 4096\r\n\r\n{{".encode())
        wait_until(lambda: store.counters["batches_rejected"] == 1, what="the broken shipment counted as refused")
    assert not [r for r in caplog.records if "Exception in ASGI application" in r.getMessage()]
