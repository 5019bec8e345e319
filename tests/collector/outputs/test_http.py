"""/flows/top and /metrics on one real HTTP server on a free loopback port."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, make_wsgi_app

from collector.contract.records import FlowRecord
from collector.outputs.http import MAX_LIMIT, TOP_PATH, serve_metrics_and_top, serve_wsgi
from collector.system.http_limits import DEFAULT_HTTP_LIMITS, RESPONSES_CUT_OFF, HttpLimits
from collector.traffic.classifier import SliceClassifier
from collector.traffic.counters import TrafficCounters
from tests.support import DEADLINE_S, dribble, dribble_until_cut_off, read_slowly, wait_until


class CountedTraffic:
    """A traffic source like the flow receiver: counters read under its lock."""

    def __init__(self) -> None:
        self.classifier = SliceClassifier.default()
        self.counters = TrafficCounters()
        self.lock = threading.Lock()
        self.reads = 0

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        with self.lock:
            self.reads += 1
            yield

    def carried(self, source: str, slice_name: str, octets: int) -> None:
        self.counters.add(
            FlowRecord(
                "2001:db8::e", 1, source, "2001:db8::2", 17, 1, 2, 34, 0, slice_name, 1, octets, 0, 0, direction="in"
            )
        )


@contextlib.contextmanager
def serving(traffic: CountedTraffic, host: str = "::1") -> Iterator[tuple[httpx.Client, CollectorRegistry]]:
    registry = CollectorRegistry()
    httpd, thread = serve_metrics_and_top(registry, traffic, (f"[{host}]" if ":" in host else host, 0))
    shown = f"[{host}]" if ":" in host else host
    try:
        with httpx.Client(base_url=f"http://{shown}:{httpd.server_port}", timeout=10) as client:
            yield client, registry
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture
def traffic() -> CountedTraffic:
    source = CountedTraffic()
    for address, octets in (("2001:db8::1", 900), ("2001:db8::2", 300), ("2001:db8::3", 600)):
        source.carried(address, "video", octets)
    source.carried("2001:db8::9", "egov", 5)
    return source


def test_top_talkers_of_a_slice_heaviest_first_with_the_slice_total(traffic):
    with serving(traffic) as (client, _):
        answer = client.get(TOP_PATH, params={"slice": "video", "limit": "2"})
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    assert answer.json() == {
        "slice": "video",
        "limit": 2,
        "total_bytes": 1800,
        "talkers": [
            {"address": "2001:db8::1", "bytes": 900, "error": 0},
            {"address": "2001:db8::3", "bytes": 600, "error": 0},
        ],
    }
    assert traffic.reads == 1


def test_a_quiet_slice_answers_with_no_talkers_and_the_default_limit(traffic):
    with serving(traffic) as (client, _):
        assert client.get(f"{TOP_PATH}?slice=data").json() == {
            "slice": "data",
            "limit": 10,
            "total_bytes": 0,
            "talkers": [],
        }


@pytest.mark.parametrize(
    "query, error",
    [
        ("slice=vid", "unknown slice 'vid' (slices are: video, egov, data, best-effort)"),
        ("limit=3", "the slice parameter is missing (slices are: video, egov, data, best-effort)"),
        ("slice=video&limit=0", f"limit must be a whole number from 1 to {MAX_LIMIT}, got '0'"),
        ("slice=video&limit=1001", f"limit must be a whole number from 1 to {MAX_LIMIT}, got '1001'"),
        ("slice=video&limit=-5", f"limit must be a whole number from 1 to {MAX_LIMIT}, got '-5'"),
    ],
)
def test_a_bad_query_is_a_400_that_says_what_is_expected_without_reading_counters(traffic, query, error):
    with serving(traffic) as (client, _):
        answer = client.get(f"{TOP_PATH}?{query}")
    assert (answer.status_code, answer.json()) == (400, {"error": error})
    assert traffic.reads == 0


def test_only_get_is_answered_on_the_top_path(traffic):
    with serving(traffic) as (client, _):
        answer = client.post(f"{TOP_PATH}?slice=video")
    assert answer.status_code == 405 and answer.headers["allow"] == "GET"


def test_every_other_path_is_the_registrys_metrics_on_the_same_port_over_ipv4_too(traffic):
    with serving(traffic, host="127.0.0.1") as (client, registry):
        Counter("xnet_test_scrapes", "Scrapes seen by the test.", registry=registry).inc(3)
        body = client.get("/metrics").text
    assert "xnet_test_scrapes_total 3.0" in body.splitlines()
    assert traffic.reads == 0


def test_a_client_dribbling_its_headers_is_cut_off_while_metrics_answers(traffic):
    with serving(traffic) as (client, _registry):

        def metrics() -> None:
            assert client.get("/metrics").status_code == 200

        address = ("::1", int(str(client.base_url).rsplit(":", 1)[1].strip("/")))
        dribbled_s = dribble_until_cut_off(address, metrics)
    assert dribbled_s >= DEFAULT_HTTP_LIMITS.header_timeout_s - 0.5


def test_a_body_trickling_in_holds_nothing_the_server_answers_from_the_head_and_closes(traffic):
    """The agent's server reads no bodies: a slow POST gets its answer at once and its
    connection closed, with no body deadline needed."""
    with serving(traffic) as (client, _registry):

        def metrics() -> None:
            assert client.get("/metrics").status_code == 200

        address = ("::1", int(str(client.base_url).rsplit(":", 1)[1].strip("/")))
        head = f"POST {TOP_PATH} HTTP/1.1\r\nHost: agent\r\nContent-Length: 4096\r\n\r\n".encode()
        trickled_s, answer = dribble(address, head, metrics, interval=1.0)
    assert answer.startswith(b"HTTP/1.0 405 ") and b"only GET" in answer
    assert trickled_s < DEFAULT_HTTP_LIMITS.body_grace_s


def test_connections_beyond_the_bound_are_closed_and_those_served_go_on():
    limits = HttpLimits(header_timeout_s=DEADLINE_S, max_connections=2)
    httpd, thread = serve_wsgi(make_wsgi_app(CollectorRegistry()), ("::1", 0), limits)
    try:
        held = [socket.create_connection(("::1", httpd.server_port), timeout=DEADLINE_S) for _ in range(2)]
        for sock in held:
            sock.sendall(b"GET /metrics HTTP/1.1\r\n")  # heads begun, not ended: both slots taken
        with socket.create_connection(("::1", httpd.server_port), timeout=DEADLINE_S) as extra:
            assert extra.recv(1024) == b""  # closed at once
        assert httpd.refused_total == 1
        held[0].sendall(b"\r\n")  # its head ends: answered, and its slot freed
        assert held[0].recv(1024).startswith(b"HTTP/1.0 200 ")
        wait_until(lambda: httpx.get(f"http://[::1]:{httpd.server_port}/metrics", timeout=DEADLINE_S).is_success)
        for sock in held:
            sock.close()
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_a_client_reading_a_big_response_a_byte_a_second_is_cut_off_and_counted_while_others_are_served():
    big = b"m" * (16 << 20)  # beyond what the kernel's buffers on both ends take

    def app(environ: dict, start_response) -> list[bytes]:
        body = big if environ["PATH_INFO"] == "/big" else b"ok"
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]

    cut_before = RESPONSES_CUT_OFF.total
    httpd, thread = serve_wsgi(app, ("::1", 0))
    url = f"http://[::1]:{httpd.server_port}"
    try:

        def small() -> None:
            assert httpx.get(f"{url}/small", timeout=DEADLINE_S).text == "ok"

        read_s, got = read_slowly(("::1", httpd.server_port), b"GET /big HTTP/1.0\r\n\r\n", small)
        assert RESPONSES_CUT_OFF.total == cut_before + 1
        assert len(httpx.get(f"{url}/big", timeout=DEADLINE_S).content) == len(big)  # a reader that keeps up
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
    assert got < len(big)
    assert DEFAULT_HTTP_LIMITS.send_grace_s - 1 <= read_s < DEFAULT_HTTP_LIMITS.send_grace_s + DEADLINE_S / 2
