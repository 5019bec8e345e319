"""Helpers for test suites that need the lab: bring it up once, always tear it down.

    @pytest.fixture(scope="session")
    def lab():
        with running_lab("small") as up:
            yield up

A test run's labs are its own: their namespaces carry the run's process id (`xl4242-core`)
and their record lives under /run/xnetmon/lab-tests/, so two runs on one machine (or a
run beside a lab brought up by hand with `xnetmon lab up`) never collide, and a run never
tears down what another made. Within one run, suites share one lab per topology: the
first `running_lab` brings it up and the last one to exit tears it down. Labs left by a
run that was killed are removed by the next run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lab import netns
from lab.lab import Lab, LabError
from lab.state import StateStore

TEST_STATE_DIR = Path("/run/xnetmon/lab-tests")

_shared: dict[str, list] = {}  # topology -> [lab, number of users]


def run_prefix() -> str:
    """The namespace prefix of this test run's labs."""
    return f"xl{os.getpid()}-"


@contextmanager
def running_lab(topology: str, state_dir: Path | None = None) -> Iterator[Lab]:
    """Up on entry, down on exit even when the body fails; checks nothing is left behind.

    `state_dir` only matters to the first user of a topology in this run.
    """
    entry = _shared.get(topology)
    if entry is None:
        remove_stale_labs()
        store = StateStore(state_dir or TEST_STATE_DIR / f"{topology}-{os.getpid()}")
        lab = Lab.from_name(topology, store, prefix=run_prefix())
        lab.up()
        entry = _shared[topology] = [lab, 0]
    entry[1] += 1
    try:
        yield entry[0]
    finally:
        entry[1] -= 1
        if entry[1] == 0:  # the last user tears it down
            del _shared[topology]
            _tear_down(entry[0], topology)


def _tear_down(lab: Lab, topology: str) -> None:
    spawned = _recorded_processes(lab.store)
    lab.down()
    shutil.rmtree(lab.store.directory, ignore_errors=True)
    leftovers = [ns for ns in (lab.namespace(s) for s in lab.sites) if netns.exists(ns)]
    running = [pid for pid, started in spawned if netns.alive(pid, started)]
    if leftovers or running:
        raise LabError(f"lab {topology} left namespaces {leftovers} and processes {running} behind")


def remove_stale_labs() -> list[str]:
    """Tear down labs recorded by test runs whose process is gone (killed mid-run)."""
    removed: list[str] = []
    if not TEST_STATE_DIR.is_dir():
        return removed
    for directory in sorted(TEST_STATE_DIR.iterdir()):
        owner = directory.name.rsplit("-", 1)[-1]
        if not owner.isdigit() or int(owner) == os.getpid() or netns.alive(int(owner)):
            continue
        store = StateStore(directory)
        if store.load() is not None:
            Lab.current(store).down()
            removed.append(directory.name)
        shutil.rmtree(directory, ignore_errors=True)
    return removed


def _recorded_processes(store: StateStore) -> list[tuple[int, int | None]]:
    state = store.load()
    if state is None:
        return []
    processes = state.processes + [p for f in state.faults for p in f.processes]
    return [(p.pid, p.started) for p in processes]


def heal_everything(lab: Lab) -> None:
    """Heal whatever faults a test left active (used after each test)."""
    if lab.store.load() is not None:
        lab.heal_all()
