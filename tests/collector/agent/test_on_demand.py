"""The agent's on-demand probes on a real nats-server: an operator's request runs the local
probe command and its lines come back as the command prints them; a target outside the
allowed ones, a count over the bound and the request past `max_concurrent` are refused with
their reason; a cancel ends the probe with its summary; the metrics count every outcome."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import subprocess
import sys

import nats
import pytest

from collector.agent.on_demand import NICE_INCREMENT, OnDemandLimits, OnDemandProbes
from collector.bus.connection import operator_identity
from collector.bus.probe_client import RemoteProbe, new_request_id
from collector.bus.probe_requests import Accepted, End, Line, Lines, ProbeStart, Refused, decode_reply, reply_subject
from collector.contract.records import Target
from collector.outputs.prometheus.state import MetricsState
from tests.bus_support import connect_options, running_bus
from tests.support import DEADLINE_S, wait_until
from xnetmon import bus_setup

pytestmark = [pytest.mark.tool("nats-server"), pytest.mark.root]


@pytest.fixture
def bus(tmp_path):
    with running_bus(tmp_path, operators=("noc",)) as (pki, server):
        yield pki, server


@pytest.fixture
def agent(bus):
    pki, server = bus
    metrics = MetricsState()
    probes = OnDemandProbes(
        "cnty1a",
        bus_setup.site_endpoint(pki, "cnty1a", (server.url,)),
        OnDemandLimits(allowed_prefixes=(ipaddress.ip_network("::1/128"),), max_count=500),
        targets=(Target("far", "fd00::7"),),
        metrics=metrics,
    )
    probes.start(ready_timeout_s=DEADLINE_S)
    yield probes, metrics
    probes.stop()


def ask(bus, *requests: ProbeStart, cancel_after_lines: int | None = None, concurrently: bool = False):
    """Every reply to each request, as the operator `noc` gets them."""
    pki, server = bus

    async def one(client, request: ProbeStart) -> list:
        replies = []
        async with RemoteProbe(
            client, operator_identity("noc"), "cnty1a", request, first_reply_timeout_s=DEADLINE_S
        ) as probe:
            async for reply in probe.replies():
                replies.append(reply)
                lines = sum(isinstance(r, Line) for r in replies)
                if cancel_after_lines is not None and lines == cancel_after_lines:
                    await probe.cancel()
        return replies

    async def main() -> list[list]:
        client = await nats.connect(**connect_options(bus_setup.operator_endpoint(pki, "noc", (server.url,))))
        try:
            if concurrently:
                return list(await asyncio.gather(*(one(client, r) for r in requests)))
            return [await one(client, r) for r in requests]
        finally:
            await client.close()

    return asyncio.run(main())


def ping(**fields) -> ProbeStart:
    return ProbeStart(id=new_request_id(), **({"kind": "icmp", "target": "::1", "count": 3, "interval": 0.05} | fields))


def test_a_request_prints_what_the_local_command_prints(bus, agent):
    [replies] = ask(bus, ping())
    assert replies[0] == Accepted("cnty1a") and replies[-1] == End(0, False)
    remote = [r.text for r in replies if isinstance(r, Line)]
    local = subprocess.run(
        [sys.executable, "-m", "xnetmon", "probe", "icmp", "-c", "3", "-i", "0.05", "::1"],
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
    ).stdout.splitlines()
    assert len(remote) == len(local) and remote[0] == local[0]
    shape = [line.split("time=")[0].split(", time ")[0] for line in local if not line.startswith("rtt")]
    assert [line.split("time=")[0].split(", time ")[0] for line in remote if not line.startswith("rtt")] == shape
    wait_until(lambda: agent[1].snapshot.on_demand.requests.get(("icmp", "completed")) == 1)


def test_refusals_give_their_reason_and_are_counted(bus, agent):
    outside, too_many, trace = ask(
        bus, ping(target="fd00::99"), ping(count=501), ping(kind="trace", count=None, interval=None, max_hops=2)
    )
    assert isinstance(outside[0], Refused) and len(outside) == 1
    assert "fd00::99" in outside[0].reason and "allowed prefixes (::1/128)" in outside[0].reason
    assert outside[0].code == "target" and too_many[0].code == "limits"
    assert isinstance(too_many[0], Refused) and "count 501 is over this agent's bound of 500" in too_many[0].reason
    # a configured target is allowed without a prefix: fd00::7 is accepted (and unreachable here)
    [configured, by_name] = ask(
        bus, ping(target="fd00::7", count=1, timeout=0.2), ping(target="far", count=1, timeout=0.2)
    )
    assert configured[0] == Accepted("cnty1a") and isinstance(configured[-1], End)
    assert by_name[0] == Accepted("cnty1a") and "PING fd00::7 (fd00::7)" in by_name[1].text
    counts = agent[1].snapshot.on_demand.requests
    assert counts[("icmp", "refused_target")] == 1 and counts[("icmp", "refused_limits")] == 1
    assert trace[0] == Accepted("cnty1a") and trace[-1] == End(0, False)  # a trace is bounded by its hops


def test_a_cancel_ends_the_probe_with_its_summary(bus, agent):
    [replies] = ask(bus, ping(count=500, interval=0.1), cancel_after_lines=3)
    texts = [r.text for r in replies if isinstance(r, Line)]
    assert replies[-1] == End(0, True)
    assert "--- ::1 ping statistics ---" in texts and len(texts) < 50
    wait_until(lambda: agent[1].snapshot.on_demand.requests.get(("icmp", "cancelled")) == 1)
    assert agent[1].snapshot.on_demand.in_flight == 0


def test_the_eleventh_concurrent_request_is_refused(bus, agent):
    probes, metrics = agent
    requests = [ping(count=400, interval=0.05) for _ in range(10)]

    async def main() -> tuple[list, list]:
        pki, server = bus
        client = await nats.connect(**connect_options(bus_setup.operator_endpoint(pki, "noc", (server.url,))))
        try:
            running = [
                RemoteProbe(client, operator_identity("noc"), "cnty1a", r, first_reply_timeout_s=DEADLINE_S)
                for r in requests
            ]
            firsts = []
            for probe in running:
                await probe.__aenter__()
                firsts.append(await anext(probe.replies()))
            eleventh = []
            async with RemoteProbe(
                client, operator_identity("noc"), "cnty1a", ping(), first_reply_timeout_s=DEADLINE_S
            ) as probe:
                eleventh = [r async for r in probe.replies()]
            for probe in running:
                await probe.__aexit__(None, None, None)  # cancels
            return firsts, eleventh
        finally:
            await client.close()

    firsts, eleventh = asyncio.run(main())
    assert all(first == Accepted("cnty1a") for first in firsts)
    assert len(eleventh) == 1 and isinstance(eleventh[0], Refused)
    assert "10 on-demand probes are running on cnty1a, at most 10" in eleventh[0].reason
    assert eleventh[0].code == "busy"
    wait_until(lambda: metrics.snapshot.on_demand.requests.get(("icmp", "cancelled")) == 10)
    assert metrics.snapshot.on_demand.requests[("icmp", "refused_busy")] == 1
    assert probes.in_flight == 0


def test_a_line_longer_than_a_reply_comes_in_parts_that_join_up(bus):
    pki, server = bus
    # a line read in parts, then one likely read whole (both longer than a reply)
    code = "import sys; print('x' * 100_000, flush=True); sys.stdout.write('y' * 40_000 + '\\nend\\n')"
    printer = (sys.executable, "-c", code)  # the request's arguments follow
    agent = OnDemandProbes(
        "cnty1a",
        bus_setup.site_endpoint(pki, "cnty1a", (server.url,)),
        OnDemandLimits(allowed_prefixes=(ipaddress.ip_network("::1/128"),)),
        command=printer,
    )
    agent.start(ready_timeout_s=DEADLINE_S)
    try:
        [replies] = ask(bus, ping())
    finally:
        agent.stop()
    lines = [r for r in replies if isinstance(r, Line)]
    assert len(lines) > 5 and not lines[-1].more
    assert "".join(line.text + line.end for line in lines) == "x" * 100_000 + "\n" + "y" * 40_000 + "\nend\n"
    assert replies[-1] == End(0, False)


def test_on_demand_probes_run_nicer_than_the_agent_within_its_scheduling_group(bus):
    """Niced, SCHED_BATCH, and in the agent's session (with autogroups, its own session would
    be a scheduling group weighed as much as the agent's, whatever its nice value), in a
    process group of its own."""
    pki, server = bus
    code = (
        "import os; print(os.getpriority(os.PRIO_PROCESS, 0), os.sched_getscheduler(0), os.getsid(0),"
        " os.getpgid(0) == os.getpid())"
    )
    agent = OnDemandProbes(
        "cnty1a",
        bus_setup.site_endpoint(pki, "cnty1a", (server.url,)),
        OnDemandLimits(allowed_prefixes=(ipaddress.ip_network("::1/128"),)),
        command=(sys.executable, "-c", code),
    )
    agent.start(ready_timeout_s=DEADLINE_S)
    try:
        [replies] = ask(bus, ping())
    finally:
        agent.stop()
    own = os.getpriority(os.PRIO_PROCESS, 0)
    expected = f"{min(19, own + NICE_INCREMENT)} {os.SCHED_BATCH} {os.getsid(0)} True"
    assert [r.text for r in replies if isinstance(r, Line)] == [expected]


def test_lines_printed_within_a_tick_travel_together(bus):
    """A probe printing faster than LINES_EVERY_S costs the agent a message per tick, not per line."""
    pki, server = bus
    code = "import sys, time\nfor n in range(40):\n    print(n, flush=True)\n    time.sleep(0.01)"
    agent = OnDemandProbes(
        "cnty1a",
        bus_setup.site_endpoint(pki, "cnty1a", (server.url,)),
        OnDemandLimits(allowed_prefixes=(ipaddress.ip_network("::1/128"),)),
        command=(sys.executable, "-c", code),
    )
    agent.start(ready_timeout_s=DEADLINE_S)

    async def main() -> tuple[list, list[bytes]]:
        client = await nats.connect(**connect_options(bus_setup.operator_endpoint(pki, "noc", (server.url,))))
        try:
            request = ping()
            on_the_wire: list[bytes] = []
            seen = await client.subscribe(reply_subject(operator_identity("noc"), request.id))
            async with RemoteProbe(
                client, operator_identity("noc"), "cnty1a", request, first_reply_timeout_s=DEADLINE_S
            ) as probe:
                replies = [r async for r in probe.replies()]
            while len(on_the_wire) < 2 or not isinstance(decode_reply(on_the_wire[-1]), End):
                on_the_wire.append((await seen.next_msg(timeout=DEADLINE_S)).data)
            return replies, on_the_wire
        finally:
            await client.close()

    try:
        replies, on_the_wire = asyncio.run(main())
    finally:
        agent.stop()
    assert [r.text for r in replies if isinstance(r, Line)] == [str(n) for n in range(40)]
    batches = [decode_reply(data) for data in on_the_wire[1:-1]]
    assert all(isinstance(b, Lines) for b in batches)
    assert len(batches) < 20, [len(b.lines) for b in batches]  # 40 lines over >= 0.4 s: ~4-5 batches
