"""Least privilege: the agent probes as an unprivileged user holding only CAP_NET_RAW, a
reflector on a port >= 1024, the analyzer and the flow receiver need no privilege at all, and the systemd
units in deploy/systemd/ that run them so are valid."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import DEADLINE_S, REPO, XNETMON, free_udp_port, stop_process, wait_until

UNITS = REPO / "deploy" / "systemd"
CAP_NET_RAW = 1 << 13


def as_nobody(argv: list[str], caps: tuple[str, ...] = ()) -> list[str]:
    """`argv` as user nobody, with exactly `caps` (inheritable, ambient and bounding)."""
    wanted = "".join(f",+{cap}" for cap in caps)
    return [
        "setpriv",
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        f"--inh-caps=-all{wanted}",
        f"--ambient-caps=-all{wanted}",
        f"--bounding-set=-all{wanted}",
        "--",
        *argv,
    ]


@contextlib.contextmanager
def shared_directory() -> Iterator[Path]:
    """A directory nobody can read and write (pytest's tmp_path is root's alone)."""
    directory = Path(tempfile.mkdtemp(prefix="xnetmon-lp-"))
    directory.chmod(0o777)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def running(argv: list[str]) -> Iterator[subprocess.Popen]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
    try:
        yield proc
    finally:
        stop_process(proc)


def process_identity(pid: int) -> tuple[int, int]:
    """(real uid, effective capability mask) of a running process."""
    status = Path(f"/proc/{pid}/status").read_text()
    uid = int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1))
    return uid, int(re.search(r"^CapEff:\s+([0-9a-f]+)", status, re.M).group(1), 16)


def received_by_kind(metrics_url: str) -> dict[str, float]:
    try:
        text = httpx.get(metrics_url, timeout=5).text
    except httpx.HTTPError:
        return {}  # not serving yet
    return {
        s.labels["probe"]: s.value
        for family in text_string_to_metric_families(text)
        if family.name == "xnet_probe_received"
        for s in family.samples
        if s.name == "xnet_probe_received_total"
    }


@pytest.mark.root
@pytest.mark.tool("setpriv")
def test_the_agent_probes_as_nobody_with_only_cap_net_raw():
    port, metrics_port = free_udp_port(), free_udp_port()
    with shared_directory() as directory:
        config = directory / "agent.yaml"
        config.write_text(
            f"""
site: {{name: here}}
targets:
  - {{name: lo, address: "::1", port: {port}, probes: [stamp, icmp], slices: [video]}}
probing: {{interval_s: 0.05, window_s: 0.5, timeout_s: 0.2, trace: {{enabled: true, period_s: 60}}}}
reflector: {{enabled: true, bind: ["::1"], port: {port}, rate_limit_pps: 0}}
metrics: {{listen: "[::1]:{metrics_port}"}}
"""
        )
        config.chmod(0o644)
        argv = as_nobody([*XNETMON, "agent", "--config", str(config)], caps=("net_raw",))
        with running(argv) as agent:
            received = wait_until(
                lambda: (
                    (r := received_by_kind(f"http://[::1]:{metrics_port}/metrics")).keys() == {"stamp", "icmp"}
                    and all(r.values())
                    and r
                ),
                what=lambda: f"agent received nothing: {agent.poll()=}",
            )
            uid, capabilities = process_identity(agent.pid)
    assert uid == 65534 and capabilities == CAP_NET_RAW  # nobody, and CAP_NET_RAW alone
    # icmp over a raw socket where ping sockets are off (net.ipv4.ping_group_range "1 0")
    assert received["stamp"] > 0 and received["icmp"] > 0


@pytest.mark.root
@pytest.mark.tool("setpriv")
def test_a_reflector_on_a_high_port_needs_no_privilege():
    port = free_udp_port()
    with running(as_nobody([*XNETMON, "reflect", "--bind", "::1", "--port", str(port)])) as reflector:
        banner = reflector.stdout.readline()
        assert "listening" in banner, banner + reflector.stderr.read()
        assert process_identity(reflector.pid) == (65534, 0)
        probe = subprocess.run(
            [*XNETMON, "probe", "stamp", "::1", "--port", str(port), "--count", "3", "--interval", "0.05"],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=DEADLINE_S,
        )
    assert probe.returncode == 0, probe.stdout + probe.stderr
    assert re.search(r"3 sent, 3 received", probe.stdout), probe.stdout


@pytest.mark.root
@pytest.mark.tool("setpriv")
def test_the_analyzer_runs_as_nobody_without_any_capability():
    port = free_udp_port()
    with shared_directory() as directory:
        argv = as_nobody([*XNETMON, "analyzer", "--listen", f"[::1]:{port}", "--state-dir", str(directory / "state")])
        with running(argv) as analyzer:
            banner = analyzer.stdout.readline()
            assert "API on http://[::1]:" in banner, banner + analyzer.stderr.read()
            assert process_identity(analyzer.pid) == (65534, 0)
            assert httpx.get(f"http://[::1]:{port}/healthz", timeout=5).status_code == 200


@pytest.mark.root
@pytest.mark.tool("setpriv")
def test_the_flow_receiver_runs_as_nobody_without_any_capability():
    port = free_udp_port()
    with shared_directory() as directory:
        state = directory / "state"
        argv = as_nobody([*XNETMON, "flows", "collect", "--listen", f"[::1]:{port}", "--state-dir", str(state)])
        with running(argv) as receiver:
            banner = receiver.stdout.readline()
            assert f"receiving flow exports on [::1]:{port}" in banner, banner + receiver.stderr.read()
            assert process_identity(receiver.pid) == (65534, 0)
            assert (state / "lock").stat().st_uid == 65534


@pytest.mark.tool("systemd-analyze")
def test_the_systemd_units_are_valid_and_grant_no_more_than_needed(tmp_path):
    units = sorted(UNITS.glob("*.service"))
    assert [u.name for u in units] == [  # one for each command that runs until stopped
        "xnetmon-agent.service",
        "xnetmon-analyzer.service",
        "xnetmon-flows.service",
        "xnetmon-reflect.service",
    ]
    for unit in units:
        text = unit.read_text()
        for setting in ("NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes"):
            assert setting in text, f"{unit.name}: {setting} missing"
        granted = re.search(r"^AmbientCapabilities=(.*)$", text, re.M).group(1).split()
        bounded = re.search(r"^CapabilityBoundingSet=(.*)$", text, re.M).group(1).split()
        assert granted == bounded == (["CAP_NET_RAW"] if unit.name == "xnetmon-agent.service" else []), unit.name
        assert re.search(r"^User=\S+", text, re.M) and re.search(r"^RestrictAddressFamilies=", text, re.M)
        # Verified as installed: ExecStart pointing at this checkout's interpreter.
        installed = tmp_path / unit.name
        installed.write_text(text.replace("/usr/local/bin/xnetmon", f"{sys.executable} -m xnetmon"))
    verified = subprocess.run(
        ["systemd-analyze", "verify", *sorted(str(p) for p in tmp_path.glob("*.service"))],
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
