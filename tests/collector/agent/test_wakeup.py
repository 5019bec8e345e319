"""The wake-up timer: readable once its time has come, not before, re-armed by arming."""

from __future__ import annotations

import asyncio
import os
import select
import time

import pytest

from collector.agent.wakeup import WakeupTimer
from tests.support import DEADLINE_S


def readable(timer: WakeupTimer, wait_s: float = 0.0) -> bool:
    return bool(select.select([timer], [], [], wait_s)[0])


def test_it_is_readable_only_once_its_time_has_come():
    with WakeupTimer() as timer:
        assert not readable(timer)  # never armed
        started = time.monotonic_ns()
        timer.arm(20_000_000)
        assert readable(timer, DEADLINE_S)
        assert time.monotonic_ns() - started >= 20_000_000


def test_arming_again_replaces_the_time_and_clears_an_expiry_not_read():
    with WakeupTimer() as timer:
        timer.arm(0)  # at once
        assert readable(timer, DEADLINE_S)
        timer.arm(60 * 1_000_000_000)
        assert not readable(timer)


def test_the_event_loop_wakes_on_it_sooner_than_on_its_own_millisecond_timers():
    async def lateness_ns() -> tuple[list[int], list[int]]:
        loop = asyncio.get_running_loop()
        ours, asyncio_timers = [], []
        with WakeupTimer() as timer:
            for _ in range(40):  # interleaved, so both see the same machine
                woke = loop.create_future()
                loop.add_reader(timer.fileno(), lambda f=woke: f.done() or f.set_result(time.monotonic_ns()))
                due = time.monotonic_ns() + 300_000
                timer.arm(due - time.monotonic_ns())
                ours.append(await asyncio.wait_for(woke, DEADLINE_S) - due)
                loop.remove_reader(timer.fileno())
                woke = loop.create_future()
                due = time.monotonic_ns() + 300_000
                loop.call_later(0.0003, lambda f=woke: f.set_result(time.monotonic_ns()))
                asyncio_timers.append(await asyncio.wait_for(woke, DEADLINE_S) - due)
        return ours, asyncio_timers

    ours, asyncio_timers = (sorted(v) for v in asyncio.run(lateness_ns()))
    assert ours[0] >= 0  # never early
    # asyncio waits in epoll for whole milliseconds: a timer 0.3 ms ahead fires ~0.7 ms late
    assert ours[len(ours) // 2] < asyncio_timers[len(asyncio_timers) // 2]


def test_a_closed_timer_gives_up_its_descriptor():
    timer = WakeupTimer()
    fd = timer.fileno()
    timer.close()
    timer.close()  # twice is harmless
    assert timer.fileno() == -1
    with pytest.raises(OSError):
        os.fstat(fd)
