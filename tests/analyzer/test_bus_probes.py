"""POST /probe's prober over the bus, against a real nats-server and an agent's on-demand
probes: the agent's summary (a trace's report) comes back; its refusals become the API's errors (403, 429); an
agent that does not answer is AgentUnreachable (503)."""

from __future__ import annotations

import ipaddress

import pytest

from analyzer.api.models import ProbeRequest
from analyzer.api.probe_runs import AgentUnreachable, TargetNotAllowed, TooManyProbes
from analyzer.bus_probes import BusProber, _refusal
from collector.agent.on_demand import OnDemandLimits, OnDemandProbes
from collector.bus.probe_requests import Refused
from tests.bus_support import running_bus
from tests.support import DEADLINE_S
from xnetmon import bus_setup


@pytest.mark.root
@pytest.mark.tool("nats-server")
def test_the_agents_summary_or_trace_comes_back_and_refusals_are_the_apis_errors(tmp_path):
    with running_bus(tmp_path, operators=("api",)) as (pki, server):
        limits = OnDemandLimits(allowed_prefixes=(ipaddress.ip_network("::1/128"),))
        agent = OnDemandProbes("cnty1a", bus_setup.site_endpoint(pki, "cnty1a", (server.url,)), limits)
        agent.start(ready_timeout_s=DEADLINE_S)
        try:
            prober = BusProber(bus_setup.operator_endpoint(pki, "api", (server.url,)))
            answer = prober(ProbeRequest(agent="cnty1a", target="::1", kind="icmp", slice="video", count=3))
            assert answer["summary"]["sent"] == 3 and answer["summary"]["received"] == 3
            traced = prober(ProbeRequest(agent="cnty1a", target="::1", kind="trace", slice="video", count=2))
            report = traced["trace"]
            assert report["rounds"] == 2 and [row["address"] for row in report["report"]] == ["::1"]
            with pytest.raises(TargetNotAllowed, match="agent cnty1a refused: target fd00::1"):
                prober(ProbeRequest(agent="cnty1a", target="fd00::1", kind="icmp", slice="video", count=1))
            with pytest.raises(AgentUnreachable, match=r"agent cnty2b: no agent answered on xnetprobe\.cnty2b"):
                prober(ProbeRequest(agent="cnty2b", target="::1", kind="icmp", slice="video", count=1))
        finally:
            agent.stop()


def test_each_refusal_code_has_its_error():
    assert isinstance(_refusal("a", Refused("full", "busy")), TooManyProbes)
    assert isinstance(_refusal("a", Refused("far", "target")), TargetNotAllowed)
    limits = _refusal("a", Refused("too many", "limits"))
    assert type(limits) is ValueError and str(limits) == "agent a refused: too many"
