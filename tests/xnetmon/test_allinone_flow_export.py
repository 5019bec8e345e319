"""The all-in-one's softflowd plumbing: the port check it waits on, the processes it starts
and stops, and the one line it gives when softflowd is not there."""

from __future__ import annotations

import os
import socket

import pytest

from collector.agent.plan import load_plan
from tests.support import free_udp_port
from xnetmon.allinone import _with_loopback_flows
from xnetmon.commands.run import EMBEDDED_CONFIG
from xnetmon.softflowd import FLOW_PORT, SoftflowdFleet, softflowd_argv, udp_port_bound


def test_a_bound_udp_port_is_seen_in_the_process_namespace_and_gone_once_closed():
    port = free_udp_port()
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        sock.bind(("::1", port))
        assert udp_port_bound(os.getpid(), port)
    assert not udp_port_bound(os.getpid(), port)


def test_softflowd_exports_ipfix_with_short_timeouts_to_the_collector(tmp_path):
    argv = softflowd_argv("to-core", ("fd00::1", FLOW_PORT), tmp_path / "c.ctl", tmp_path / "p.pid")
    assert argv[argv.index("-n") + 1] == f"[fd00::1]:{FLOW_PORT}"
    assert argv[argv.index("-v") + 1] == "10"
    assert "maxlife=5" in argv and argv[-1] == "ip6"


def test_without_softflowd_the_loopback_monitor_runs_without_flows_and_says_why(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing to find there
    plan = load_plan(EMBEDDED_CONFIG)
    kept, why = _with_loopback_flows(plan)
    assert kept is plan and kept.flows is None
    assert why == "no flow exports: softflowd is not installed (apt-get install softflowd)"


@pytest.mark.root
@pytest.mark.tool("softflowd")
def test_the_fleet_starts_softflowd_and_leaves_no_process_behind(tmp_path):
    fleet = SoftflowdFleet(tmp_path)
    exporter = fleet.start(
        "local", "lo", ("::1", free_udp_port()), lambda _site, argv: list(argv), bpf="ip6 and udp port 9"
    )
    try:
        assert exporter.process.poll() is None
        assert (tmp_path / "softflowd-local-lo.log").exists()
    finally:
        fleet.stop()
    assert exporter.process.returncode is not None
    assert fleet.exporters == []
