"""`xnetmon probe KIND TARGET --from SITE` against a real nats-server and an agent's
on-demand probes: what the local command prints and its exit status, a refusal as a usage
error with the agent's reason, Ctrl-C that stops the remote probe and prints its summary."""

from __future__ import annotations

import argparse
import ipaddress
import signal
import subprocess
import sys

import pytest

from collector.agent.on_demand import OnDemandLimits, OnDemandProbes
from collector.outputs.prometheus.state import MetricsState
from tests.bus_support import running_bus
from tests.support import DEADLINE_S, LineReader, wait_until, xnetmon
from xnetmon import bus_setup
from xnetmon.cli import build_parser
from xnetmon.commands.probe_remote import request_of
from xnetmon.errors import UsageError


@pytest.fixture
def site(tmp_path):
    with running_bus(tmp_path, operators=("noc",)) as (pki, server):
        metrics = MetricsState()
        limits = OnDemandLimits(allowed_prefixes=(ipaddress.ip_network("::1/128"),))
        probes = OnDemandProbes("cnty1a", bus_setup.site_endpoint(pki, "cnty1a", (server.url,)), limits, (), metrics)
        probes.start(ready_timeout_s=DEADLINE_S)
        try:
            yield ["--from", "cnty1a", "--bus", server.url, "--bus-dir", str(pki)], metrics
        finally:
            probes.stop()


def parsed(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["probe", *argv])


def test_the_request_carries_the_parsed_options_and_refuses_local_ones():
    request = request_of("trace", parsed("trace", "cnty2b", "--slice", "video", "--report", "-c", "4", "--from", "a"))
    assert (request.kind, request.target, request.slice, request.report, request.count) == (
        "trace",
        "cnty2b",
        "video",
        True,
        4,
    )
    assert request_of("icmp", parsed("ping", "::1", "--json", "--from", "a")).json_output
    with pytest.raises(UsageError, match="--source names something on this host"):
        request_of("icmp", parsed("ping", "::1", "-S", "::1", "--from", "a"))
    with pytest.raises(UsageError, match="flow_label"):
        request_of("icmp", parsed("ping", "::1", "--flow-label", "0x100000", "--from", "a"))


@pytest.mark.root
@pytest.mark.tool("nats-server")
def test_ping_from_a_site_prints_what_the_local_command_prints(site):
    remote_args, _ = site
    remote = xnetmon("probe", "ping", "::1", "-c", "3", "-i", "0.05", *remote_args)
    local = xnetmon("probe", "ping", "::1", "-c", "3", "-i", "0.05")
    assert remote.returncode == local.returncode == 0, remote.stderr

    def shape(text: str) -> list[str]:
        return [line.split("time")[0] for line in text.splitlines() if not line.startswith("rtt")]

    assert shape(remote.stdout) == shape(local.stdout) and remote.stdout.splitlines()[0] == local.stdout.splitlines()[0]


@pytest.mark.root
@pytest.mark.tool("nats-server")
def test_a_refused_target_is_a_usage_error_with_the_agents_reason(site):
    remote_args, _ = site
    done = xnetmon("probe", "stamp", "fd00::99", "-c", "1", *remote_args)
    assert done.returncode == 2
    assert "cnty1a refused: target fd00::99 (fd00::99) is neither a target of cnty1a's agent" in done.stderr
    usage = xnetmon("probe", "ping", "::1", "--slice", "nosuch", "-c", "1", *remote_args)
    assert usage.returncode == 2 and "nosuch" in usage.stderr  # the command's own usage error, from afar


@pytest.mark.root
@pytest.mark.tool("nats-server")
def test_ctrl_c_stops_the_remote_probe_and_prints_its_summary(site):
    remote_args, metrics = site
    argv = [sys.executable, "-m", "xnetmon", "probe", "ping", "::1", "-i", "0.1", *remote_args]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = LineReader(process.stdout)
    out.wait_for(lambda line: "bytes from ::1" in line, count=3)
    process.send_signal(signal.SIGINT)
    assert process.wait(DEADLINE_S) == 0
    text = out.text()
    assert "--- ::1 ping statistics ---" in text and "0% packet loss" in text
    wait_until(lambda: metrics.snapshot.on_demand.requests.get(("icmp", "cancelled")) == 1)
    assert metrics.snapshot.on_demand.in_flight == 0
