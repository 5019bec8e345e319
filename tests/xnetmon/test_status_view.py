"""The status table and the hint wording, from analyzer answers as the API gives them, and
fetching them from a real HTTP server."""

from __future__ import annotations

import contextlib
import io
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from rich.console import Console

from xnetmon.status_view import AnalyzerUnreachable, component_words, describe_hint, fetch, objective_table, slice_table

MINUTE_NS = 60 * 10**9
HINT = {
    "kind": "link-loss",
    "suspects": ["prov2>city2a"],
    "slices": ["video", "egov"],
    "confidence": 0.9,
    "first_seen_ns": None,
    "evidence": [],
}


class Answers(BaseHTTPRequestHandler):
    routes: ClassVar[dict[str, tuple[int, bytes]]] = {
        "/slices": (200, b'[{"name": "video"}]'),
        "/slices/nope": (404, b'{"detail": "unknown slice nope"}'),
        "/broken": (500, b"internal error"),
    }

    def do_GET(self) -> None:
        status, body = self.routes.get(self.path, (404, b"{}"))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def analyzer() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Answers)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def rows_of(table) -> list[list[str]]:
    """The table's body rows as rendered, cell by cell."""
    console = Console(record=True, width=250, file=io.StringIO())
    console.print(table)
    lines = console.export_text().splitlines()
    return [[cell.strip() for cell in line.strip("│").split("│")] for line in lines if line.startswith("│")]


def test_fetch_reads_json_and_names_what_went_wrong():
    with analyzer() as url:
        assert fetch(url) == [{"name": "video"}]
        with pytest.raises(AnalyzerUnreachable, match="/slices/nope: 404 unknown slice nope"):
            fetch(url, "/slices/nope")
        with pytest.raises(AnalyzerUnreachable, match="/broken: 500 internal error"):
            fetch(url, "/broken")
    with pytest.raises(AnalyzerUnreachable, match=f"no analyzer answers at {url}"):
        fetch(url, timeout=1)


def test_components_and_hints_read_as_words():
    assert [component_words(n) for n in ("a>b", "core", "host:cnty1a", "service:cnty2b")] == [
        "link a>b",
        "node core",
        "the probing agent on cnty1a",
        "the reflector of cnty2b",
    ]
    assert describe_hint(HINT).startswith("loss on link prov2>city2a (confidence 0.90), affecting video, egov, since ")
    several = {**HINT, "kind": "node-down", "suspects": ["r", "r>b"]}
    assert describe_hint(several).startswith("one of node r, link r>b (the probes cannot tell them apart) down")
    assert describe_hint({**HINT, "kind": "gremlins"}).startswith("gremlins at link prov2>city2a")
    either = {**HINT, "kind": "congestion|slice-isolation"}
    assert describe_hint(either).startswith(
        "congestion or the slice starved on link prov2>city2a (the probes cannot tell which)"
    )


def test_the_slice_table_shows_age_budget_page_pair_worst_path_and_hints_under_their_slice():
    now_ns = time.time_ns()  # ages are counted from the moment the table is made
    slices = [
        {
            "name": "video",
            "status": "breached",
            "since_ns": now_ns - 180 * MINUTE_NS,
            "error_budget_remaining": 0.4567,
            "burn_rates": {"1h": 20.04, "5m": 30.0, "6h": 2.0},
            "paths": 12,
            "worst_path": {
                "path": {"source": "cnty1a", "target": "cnty2b"},
                "latest": {"loss_ratio": 0.25, "rtt_p99_s": 0.0123},
            },
            "hints": [{**HINT, "first_seen_ns": now_ns - 30 * MINUTE_NS}],
        },
        {
            "name": "egov",
            "status": "no-data",
            "since_ns": None,
            "error_budget_remaining": None,
            "burn_rates": {},
            "paths": 0,
            "worst_path": None,
        },
    ]
    video, hint, egov = rows_of(slice_table(slices, title="slices"))
    assert video == [
        "video",
        "breached",
        "3h",
        "45.7%",
        "1h 20.0  5m 30.0",
        "12",
        "cnty1a>cnty2b loss 25.0%, p99 12.300 ms",
    ]
    assert hint[:3] == ["", "hint", "30m"] and hint[-1].startswith("loss on link prov2>city2a")
    assert egov == ["egov", "no-data", "-", "-", "-", "0", "-"]


def test_the_objective_table_shows_delays_in_ms_and_ratios_in_percent():
    detail = {
        "name": "video",
        "verdict": {
            "objectives": [
                {
                    "name": "two-way-delay-percentile",
                    "percentile": 99.0,
                    "bound": 0.15,
                    "observed": 0.2125,
                    "met": False,
                },
                {"name": "two-way-packet-loss", "bound": 0.001, "observed": 0.0, "met": True},
                {"name": "availability", "bound": 0.999, "observed": None, "met": None},
            ]
        },
    }
    assert rows_of(objective_table(detail)) == [
        ["two-way-delay-percentile p99", "212.500 ms", "150.000 ms", "NO"],
        ["two-way-packet-loss", "0.0000%", "0.1000%", "yes"],
        ["availability", "-", "99.9000%", "-"],
    ]
