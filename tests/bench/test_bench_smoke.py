"""Smoke tests of the benchmarks in bench/: each runs end to end with tiny parameters and
writes a result file of the documented shape, and leaves no namespace or process behind.

They check structure and sanity (positive counts and times), never the performance
targets: those are read from a full run on a quiet machine (see bench/README.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import namespaces

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _run(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:  # bounds a hang only
    return subprocess.run(
        [sys.executable, str(BENCH / script), *args, "--quiet"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _processes_with(fragment: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if fragment in cmdline:
            found.append(f"{proc.name}: {cmdline}")
    return found


@pytest.mark.root
@pytest.mark.tool("ping")
def test_stamp_rtt_smoke(tmp_path: Path) -> None:
    out = tmp_path / "rtt.json"
    done = _run("stamp_rtt.py", "--rounds", "1", "--count", "20", "--output", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ours-ping us" in done.stdout  # the table was printed
    result = json.loads(out.read_text())
    assert result["benchmark"] == "stamp_rtt"
    assert [p["path"] for p in result["paths"]] == ["loopback", "veth"]
    for path in result["paths"]:
        for tool in ("xnetmon", "ping"):
            t = path["tools"][tool]
            assert t["pooled"]["n"] > 0, path["rounds"]
            assert t["median_us"] > 0
            assert t["pooled"]["p99_us"] >= t["pooled"]["p50_us"] > 0
            assert t["spread_us"] >= 0
        cmp = path["comparison"]
        assert isinstance(cmp["median_diff_us"], float)
        assert cmp["median_ratio"] > 0
        assert cmp["spread_ratio"] is None or cmp["spread_ratio"] >= 0
        assert len(path["rounds"]) == 1
        # cleaned up: the namespaces are gone and no reflector on the run's port survives
        assert not set(path["namespaces"]) & namespaces()
        assert not [p for p in _processes_with(f"--port {path['port']}") if " reflect " in p]


@pytest.mark.root
@pytest.mark.tool("ping")
@pytest.mark.tool("gcc")
@pytest.mark.tool("taskset")
def test_reflector_throughput_smoke(tmp_path: Path) -> None:
    out = tmp_path / "throughput.json"
    blasters_before = set(_processes_with("udp_blaster"))  # another run's, if any, are not ours to judge
    tiny = ["--reps", "1", "--seconds", "0.5", "--warmup", "0.2", "--scaling", "--scaling-cycles", "2"]
    tiny += ["--scaling-requests", "1000"]
    done = _run("reflector_throughput.py", *tiny, "--output", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "x echo" in done.stdout
    result = json.loads(out.read_text())
    assert result["benchmark"] == "reflector_throughput"
    assert set(result["servers"]) == {"echo", "stateless", "stateful"}
    for name, s in result["servers"].items():
        assert s["median_pps"] > 0, name
        assert s["ratio_to_echo"] > 0, name
        assert s["median_replies_per_cpu_second"] is None or s["median_replies_per_cpu_second"] > 0
    assert result["servers"]["echo"]["ratio_to_echo"] == pytest.approx(1.0)
    run = result["runs"][0]
    for name in ("echo", "stateless", "stateful"):
        assert run[name]["replies"] > 0 and run[name]["bad_replies"] == 0
        assert run[name]["sent"] >= run[name]["replies"]
    assert isinstance(result["stateless_within_target"], bool)
    assert isinstance(result["stateful_within_target"], bool)
    for workers in (1, 2):  # the scaling runs: every queued request answered, by every process
        for name in ("stateless", "echo"):
            drained = run[f"workers{workers}"][name]
            assert drained["replies"] == drained["sent"] == 2 * 1000 * workers, (workers, name)
            assert drained["pps"] > 0
    assert result["scaling"]["stateless"]["ratio"] > 0 and result["scaling"]["echo"]["ratio"] > 0
    for port in result["parameters"]["ports"].values():
        assert not _processes_with(f"--port {port}"), port
    assert not set(_processes_with("udp_blaster")) - blasters_before
