"""Path discovery over real UDP traces to loopback: which paths it follows, when it traces
again, and what it does with a trace that cannot run."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter

from collector.agent.discovery import PathDiscovery
from collector.agent.plan import PlannedProbe
from collector.contract.records import PathObservation, Slice, Target
from collector.system.loop_errors import LoopErrors
from tests.analyzer_support import window

HOUR_S = 3600.0  # no periodic trace comes due while a test runs
VIDEO = Slice("video", 34)


def planned(name: str, address: str, slice_: Slice = VIDEO) -> PlannedProbe:
    return PlannedProbe(Target(name, address), slice_, "stamp", 1.0, 1, 2.0, None, None)


def seen_hop_limits(target: str, reflector: int, reply: int, received: int = 10):
    base = window(0, target=target, sent=10, lost=10 - received)
    return dataclasses.replace(base, reflector_hop_limit=reflector, reply_hop_limit=reply)


class Traced:
    """Collects observations and lets a test wait until `count` of them have arrived."""

    def __init__(self) -> None:
        self.observations: list[PathObservation] = []
        self._arrived = asyncio.Event()

    def __call__(self, observation: PathObservation) -> None:
        self.observations.append(observation)
        self._arrived.set()

    async def until(self, count: int, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.observations) < count:
                self._arrived.clear()
                await self._arrived.wait()

    def per_target(self) -> Counter:
        return Counter(o.target for o in self.observations)


async def running(discovery: PathDiscovery, body) -> None:
    """Run discovery while `body` awaits what it expects, then stop it."""
    stop = asyncio.Event()
    task = asyncio.create_task(discovery.run(stop))
    try:
        await body()
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


def test_every_ipv6_path_is_traced_at_start_and_ipv4_targets_are_left_out():
    async def scenario():
        traced = Traced()
        # "a-v4" sorts first, so it would be traced first if discovery followed it
        discovery = PathDiscovery(
            [planned("a-v4", "127.0.0.1"), planned("core", "::1"), planned("core", "::1", Slice("egov", 26))],
            HOUR_S,
            "udp",
            traced,
        )
        await running(discovery, lambda: traced.until(2))
        assert sorted((o.target, o.slice) for o in traced.observations) == [("core", "egov"), ("core", "video")]
        assert all(o.reached and o.hops == ("::1",) for o in traced.observations)
        assert (discovery.traces_run, discovery.trace_failures) == (2, 0)

    asyncio.run(scenario())


def test_a_changed_hop_limit_traces_that_path_again_and_only_that_path():
    async def scenario():
        traced = Traced()
        discovery = PathDiscovery([planned("a", "::1"), planned("b", "::1")], HOUR_S, "udp", traced)
        await running(discovery, lambda: traced.until(2))
        discovery.note_windows([seen_hop_limits("a", 60, 60), seen_hop_limits("b", 60, 60)])  # first sighting
        discovery.note_windows([seen_hop_limits("a", 60, 60)])  # unchanged
        discovery.note_windows([seen_hop_limits("a", 1, 1, received=0)])  # nothing came back: no hop limits
        discovery.note_windows([seen_hop_limits("b", 59, 60)])  # b moved
        # a, if wrongly due, would be traced before b (it comes first among equally due paths)
        await running(discovery, lambda: traced.until(3))
        assert traced.per_target() == {"a": 1, "b": 2}

    asyncio.run(scenario())


def test_a_new_plan_adds_paths_and_forgets_the_ones_it_dropped():
    async def scenario():
        traced = Traced()
        discovery = PathDiscovery([planned("old", "::1")], HOUR_S, "udp", traced)
        await running(discovery, lambda: traced.until(1))
        discovery.update([planned("new", "::1")])
        discovery.note_windows([seen_hop_limits("old", 60, 60), seen_hop_limits("old", 50, 50)])  # forgotten path
        await running(discovery, lambda: traced.until(2))
        assert [o.target for o in traced.observations] == ["old", "new"]
        assert discovery.traces_run == 2

    asyncio.run(scenario())


def test_a_trace_that_cannot_run_is_counted_and_reported_nowhere():
    async def scenario():
        traced = Traced()
        # the documentation prefix is on no interface: binding the probe socket to it fails
        discovery = PathDiscovery([planned("core", "::1")], HOUR_S, "udp", traced, source="2001:db8::dead")

        async def failed():
            async with asyncio.timeout(10):
                while discovery.trace_failures == 0:
                    await asyncio.sleep(0.01)

        await running(discovery, failed)
        assert (discovery.trace_failures, discovery.traces_run, traced.observations) == (1, 0, [])

    asyncio.run(scenario())


def test_an_unexpected_error_in_a_trace_is_counted_and_discovery_goes_on():
    """Before, any error but OSError and ValueError ended the discovery task, and with it the
    agent (its tasks are gathered)."""

    class FailingOnce(Traced):
        def __call__(self, observation: PathObservation) -> None:
            if not self.observations and not getattr(self, "failed", False):
                self.failed = True
                raise RuntimeError("a bug handling an observation")
            super().__call__(observation)

    async def scenario():
        traced = FailingOnce()
        errors = LoopErrors()
        discovery = PathDiscovery([planned("a", "::1"), planned("b", "::1")], HOUR_S, "udp", traced, errors=errors)
        await running(discovery, lambda: traced.until(1))
        assert errors.counts() == {"discovery": 1}
        assert [o.target for o in traced.observations] == ["b"]

    asyncio.run(scenario())
