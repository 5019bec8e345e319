"""On-demand probes apart from the reads (analyzer.api.probe_runs): over a real server, 40 slow
probes get their 8 slots and 429 for the rest at once, and /healthz answers while they run."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest

from analyzer.api.app import create_app
from analyzer.api.probe_runs import ProbeRuns, TargetNotAllowed, TooManyProbes
from analyzer.service import ApiServer
from analyzer.sla.verdicts import default_policies
from analyzer.store.memory import WindowStore
from tests.api_support import AUTH, TOKEN
from tests.support import wait_until

PROBE = {"agent": "cnty1a", "target": "fd00::1", "kind": "stamp", "slice": "video", "count": 5}


def test_healthz_answers_while_forty_slow_probes_run_and_probes_beyond_the_bound_get_429():
    release = threading.Event()
    started = []

    def slow_prober(request):
        started.append(request)
        release.wait(60)
        return {"sent": request.count}

    app = create_app(WindowStore(default_policies()), token=TOKEN, prober=slow_prober, probe_targets=["fd00::/64"])
    statuses: list[int] = []
    with ApiServer(app, ("::1", 0)) as server:

        def probe() -> None:
            statuses.append(httpx.post(f"{server.url}/probe", json=PROBE, headers=AUTH, timeout=90).status_code)

        threads = [threading.Thread(target=probe) for _ in range(40)]
        try:
            for thread in threads:
                thread.start()
            wait_until(lambda: len(started) == 8 and statuses.count(429) == 32, what="8 probes running, 32 refused")
            began = time.monotonic()
            health = httpx.get(f"{server.url}/healthz", timeout=10)
            assert health.status_code == 200 and time.monotonic() - began < 5
        finally:
            release.set()
            for thread in threads:
                thread.join(90)
    assert sorted(statuses) == [200] * 8 + [429] * 32


def test_a_probe_slot_is_given_back_when_the_probe_fails():
    def failing(request):
        raise ValueError("no agent here")

    runs = ProbeRuns(failing, lambda: (), max_in_flight=1)
    for _ in range(3):
        with pytest.raises(ValueError, match="no agent here"):
            asyncio.run(runs.run(None))
    assert runs.in_flight == 0
    runs.close()


def test_beyond_the_bound_a_probe_is_refused_at_once():
    async def scenario() -> None:
        gate = asyncio.Event()

        async def waiting(request):
            await gate.wait()
            return {}

        runs = ProbeRuns(waiting, lambda: (), max_in_flight=2)
        running = [asyncio.create_task(runs.run(None)) for _ in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(TooManyProbes, match="2 probes are running"):
            await runs.run(None)
        gate.set()
        await asyncio.gather(*running)
        assert runs.in_flight == 0

    asyncio.run(scenario())


def test_targets_are_the_agents_or_inside_the_allowed_prefixes():
    runs = ProbeRuns(lambda r: {}, lambda: ("fd00::1", "core.example"), allowed=("2001:db8::/32", "192.0.2.7"))
    for target in ("fd00:0::1", "2001:db8::66", "192.0.2.7"):
        runs.check_target(target)
    for target in ("fd00::2", "192.0.2.8", "::1"):
        with pytest.raises(TargetNotAllowed, match=f"{target} is not a target of any agent here"):
            runs.check_target(target)
    runs.close()
