"""Smoke test of bench/altmark_marking.py: a tiny run writes a result of the documented shape
and leaves no namespace behind. Shape and sanity only, never the 50 us target."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench._common import namespaces
from tests.support import REPO


@pytest.mark.root
@pytest.mark.tool("ip6tables")
def test_altmark_marking_smoke(tmp_path):
    out = tmp_path / "marking.json"
    before = namespaces()
    done = subprocess.run(
        [sys.executable, "-m", "bench.altmark_marking", "--rounds", "1", "--count", "20", "--rate", "200",
         "--seconds", "0.5", "--output", str(out), "--quiet"],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert result["benchmark"] == "altmark_marking"
    summary = result["summary"]
    assert summary["rate_sent"] == 100 and summary["rate_marked"] == 100  # every paced packet went through the marker
    assert summary["queue_dropped"] == 0
    assert summary["marked_median_us"] > 0 and summary["unmarked_median_us"] > 0
    assert len(result["rounds"]) == 1
    assert namespaces() <= before
