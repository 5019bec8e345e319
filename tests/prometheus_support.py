"""A real Prometheus for tests: the Debian package's binary on a free loopback port, with
helpers for instant PromQL queries."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest


def free_tcp_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_prometheus(tmp_path: Path, *targets: str, netns: str | None = None,
                       config_text: str | None = None) -> Iterator[str]:
    """Our own Prometheus on a free loopback port, scraping `targets` every second (or as
    `config_text` says); yields its URL. With `netns` it runs inside that network namespace
    (query it with the same netns)."""
    port = free_tcp_port("127.0.0.1")
    config = tmp_path / "prometheus.yml"
    listed = ", ".join(f"'{t}'" for t in targets)
    config.write_text(config_text or (
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: xnet-agent\n    static_configs: [{{targets: [{listed}]}}]\n"
    ))
    argv = ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]
    with serving(argv, f"http://127.0.0.1:{port}", tmp_path / "prometheus.log", netns) as url:
        yield url


@contextlib.contextmanager
def serving(argv: list[str], url: str, log_path: Path, netns: str | None = None) -> Iterator[str]:
    """Run a Prometheus-style server (`argv`, in `netns` when given) until the block ends;
    yields `url` once its /-/ready answers."""
    name = Path(argv[0]).name
    log = log_path.open("w")
    proc = subprocess.Popen(_in(netns, argv), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                pytest.fail(f"{name} exited: {log_path.read_text()[-2000:]}")
            with contextlib.suppress(OSError, ValueError):
                if _get(f"{url}/-/ready", netns, parse=False) is not None:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"{name} did not become ready within 15 s")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
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


def query(url: str, promql: str, netns: str | None = None) -> dict[tuple, float]:
    """An instant query; each result keyed by its labels' values in label-name order."""
    body = _get(f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": promql}), netns)
    assert body["status"] == "success", body
    return {tuple(v for _, v in sorted(item["metric"].items())): float(item["value"][1])
            for item in body["data"]["result"]}


def wait_for(url: str, promql: str, ready, timeout: float = 15, netns: str | None = None) -> dict[tuple, float]:
    deadline = time.monotonic() + timeout
    while True:
        result = query(url, promql, netns)
        if ready(result):
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{promql!r} never gave the expected answer; last: {result}")
        time.sleep(0.25)
