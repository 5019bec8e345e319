"""A real Prometheus (and VictoriaMetrics) for tests: the Debian packages' binaries on free
loopback ports, a static exposition server for them to scrape, and helpers for instant PromQL
queries."""

from __future__ import annotations

import contextlib
import http.server
import json
import subprocess
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support import DEADLINE_S, free_tcp_port, wait_until


@contextlib.contextmanager
def running_prometheus(
    tmp_path: Path, *targets: str, netns: str | None = None, config_text: str | None = None
) -> Iterator[str]:
    """Our own Prometheus on a free loopback port, scraping `targets` every second (or as
    `config_text` says); yields its URL. With `netns` it runs inside that network namespace
    (query it with the same netns)."""
    port = free_tcp_port("127.0.0.1")
    config = tmp_path / "prometheus.yml"
    listed = ", ".join(f"'{t}'" for t in targets)
    config.write_text(
        config_text
        or (
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: xnet-agent\n    static_configs: [{{targets: [{listed}]}}]\n"
        )
    )
    argv = [
        "prometheus",
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    with serving(argv, f"http://127.0.0.1:{port}", tmp_path / "prometheus.log", netns) as url:
        yield url


@contextlib.contextmanager
def serving(argv: list[str], url: str, log_path: Path, netns: str | None = None) -> Iterator[str]:
    """Run a Prometheus-style server (`argv`, in `netns` when given) until the block ends;
    yields `url` once its /-/ready answers."""
    name = Path(argv[0]).name
    log = log_path.open("w")
    proc = subprocess.Popen(_in(netns, argv), stdout=log, stderr=subprocess.STDOUT)

    def ready() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"{name} exited: {log_path.read_text()[-2000:]}")
        with contextlib.suppress(OSError, ValueError):
            return _get(f"{url}/-/ready", netns, parse=False) is not None
        return False

    try:
        wait_until(ready, interval=0.2, what=f"{name} ready")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=DEADLINE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _in(netns: str | None, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", netns, *argv] if netns else argv


def _get(url: str, netns: str | None, parse: bool = True):
    """GET `url`, from inside `netns` when given (with curl there, as nothing else is routed)."""
    if netns is None:
        with urllib.request.urlopen(url, timeout=5) as response:
            body = response.read()
    else:
        done = subprocess.run(_in(netns, ["curl", "-sf", "--max-time", "5", url]), capture_output=True)
        if done.returncode != 0:
            raise OSError(f"curl {url} failed with {done.returncode}")
        body = done.stdout
    return json.loads(body) if parse else body


def instant(
    url: str, promql: str, netns: str | None = None, at: float | None = None, **params: str
) -> dict[tuple[tuple[str, str], ...], float]:
    """An instant query (now, or at the Unix time `at`; `params` go along, e.g. VictoriaMetrics'
    `nocache`); each result keyed by its (label, value) pairs in label-name order."""
    params = {"query": promql, **params} if at is None else {"query": promql, "time": f"{at:.3f}", **params}
    body = _get(f"{url}/api/v1/query?" + urllib.parse.urlencode(params), netns)
    assert body["status"] == "success", body
    return {tuple(sorted(item["metric"].items())): float(item["value"][1]) for item in body["data"]["result"]}


def query(url: str, promql: str, netns: str | None = None, at: float | None = None) -> dict[tuple, float]:
    """An instant query (now, or at the Unix time `at`); each result keyed by its labels'
    values in label-name order."""
    return {tuple(v for _, v in labels): value for labels, value in instant(url, promql, netns, at).items()}


def wait_for(url: str, promql: str, ready, timeout: float = DEADLINE_S, netns: str | None = None) -> dict[tuple, float]:
    """The answer to `promql` once `ready(answer)` holds."""
    last: dict[tuple, float] = {}

    def answered() -> bool:
        nonlocal last
        last = query(url, promql, netns)
        return ready(last)

    wait_until(
        answered, timeout, interval=0.25, what=lambda: f"{promql!r} never gave the expected answer; last: {last}"
    )
    return last


@contextlib.contextmanager
def running_victoria_metrics(tmp_path: Path, flags: list[str]) -> Iterator[str]:
    """Our own VictoriaMetrics (Debian's victoria-metrics) with `flags`, storing in `tmp_path`
    and listening on a free loopback port; yields its URL."""
    port = free_tcp_port("127.0.0.1")
    argv = [
        "victoria-metrics",
        *flags,
        f"-storageDataPath={tmp_path / 'victoria-metrics'}",
        f"-httpListenAddr=127.0.0.1:{port}",
        "-loggerLevel=WARN",
    ]
    with serving(argv, f"http://127.0.0.1:{port}", tmp_path / "victoria-metrics.log") as url:
        yield url


def post(url: str, body: bytes) -> int:
    """POST `body` (e.g. an import into VictoriaMetrics); the HTTP status."""
    with urllib.request.urlopen(urllib.request.Request(url, data=body, method="POST"), timeout=60) as response:
        return response.status


@contextlib.contextmanager
def exposition_server(render: Callable[[], str]) -> Iterator[str]:
    """A static exposition server on a free loopback port: every GET answers `render()` in
    Prometheus' text format; yields its `host:port` to scrape."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = render().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="exposition", daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
