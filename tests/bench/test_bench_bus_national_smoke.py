"""Smoke test of bench/bus_national.py: a tiny run (a few sites, seconds) against one real
nats-server and a real three-server cluster writes a result of the documented shape, with
every offered message acknowledged and /proc figures for each server. Structure and sanity
only, never a figure (see bench/README.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.tool("nats-server")
def test_bus_national_smoke(tmp_path: Path) -> None:
    output = tmp_path / "result.json"
    argv = ["--sites", "6", "--seconds", "2", "--warm", "1", "--processes", "2", "--max-bytes", str(64 << 20)]
    result = subprocess.run(
        [sys.executable, str(BENCH / "bus_national.py"), *argv, "--output", str(output), "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,  # bounds a hang only: a loaded machine is slower
    )
    assert result.returncode == 0, result.stderr
    assert "eof_received" not in result.stderr  # its publishers' loops know their streams are TLS
    data = json.loads(output.read_text())
    assert data["parameters"]["windows_body_bytes"] > 24 * 500  # 24 windows of JSON
    single, cluster = data["modes"]["single"], data["modes"]["cluster"]
    assert len(single["servers"]) == 1 and len(cluster["servers"]) == 3
    for mode in (single, cluster):
        assert mode["failed"] == 0 and mode["messages_acked_per_s"] > 0
        assert all(s["rss_mb"] > 1 and s["cpu_cores"] >= 0 for s in mode["servers"])
        assert mode["ack_p50_ms"] <= mode["ack_p99_ms"]
