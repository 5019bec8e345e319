"""The all-in-one's on-demand probe (POST /probe) run as a command from the named agent."""

from __future__ import annotations

import pytest

from analyzer.api.models import ProbeRequest
from tests.support import free_udp_port, running_reflector
from xnetmon.allinone import CommandProber


def test_a_probe_from_the_local_agent_returns_its_summary():
    port = free_udp_port()
    prober = CommandProber(("local",), lambda _site, argv: argv, port)
    with running_reflector("--bind", "::1", "--port", str(port)):
        answer = prober(ProbeRequest(agent="local", target="::1", kind="stamp", slice="video", count=3))
    assert answer["summary"]["sent"] == 3 and answer["summary"]["received"] == 3


def test_an_unknown_agent_is_a_bad_request_naming_the_agents():
    prober = CommandProber(("core", "cnty1a"), lambda _site, argv: argv, 8620)
    with pytest.raises(ValueError, match="no agent on 'prov9' here \\(agents: core, cnty1a\\)"):
        prober(ProbeRequest(agent="prov9", target="::1", kind="stamp", slice="video", count=1))


@pytest.mark.root  # raw sockets (ping sockets are off for root's group here)
def test_an_icmp_probe_runs_the_command_of_that_kind():
    prober = CommandProber(("local",), lambda _site, argv: argv, 9)
    answer = prober(ProbeRequest(agent="local", target="::1", kind="icmp", slice="video", count=2))
    assert answer["summary"]["sent"] == 2 and answer["summary"]["received"] == 2


def test_a_trace_answers_its_report_hop_by_hop():
    prober = CommandProber(("local",), lambda _site, argv: argv, 9)
    answer = prober(ProbeRequest(agent="local", target="::1", kind="trace", slice="video", count=3))
    report = answer["trace"]
    assert report["address"] == "::1" and report["rounds"] == 3 and report["slice"] == "video"
    assert [row["address"] for row in report["report"]] == ["::1"] and report["path"]["reached"]
    assert report["report"][0]["sent"] == 3 and report["report"][0]["received"] == 3
