"""Bring-up and tear-down of the `tiny` lab, with its own state directory.

Its namespaces (xl<pid>-r1..r3) differ from `small`'s, so these tests run beside the
session's `small` lab and also prove that tearing one down leaves the other alone.
"""

from __future__ import annotations

import subprocess

import pytest

from lab import Lab, LabError, netns
from lab.measure import ping
from lab.state import LabState, StateStore
from lab.testing import run_prefix
from tests.support import DEADLINE_S, wait_until

pytestmark = [pytest.mark.root, pytest.mark.lab]

TINY_NAMESPACES = [run_prefix() + site for site in ("r1", "r2", "r3")]


def namespaces() -> set[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in listed.splitlines() if line.strip()}


@pytest.fixture
def tiny(tmp_path):
    lab = Lab.from_name("tiny", StateStore(tmp_path / "state"), prefix=run_prefix())
    try:
        yield lab
    finally:
        lab.down()
        for ns in TINY_NAMESPACES:  # only if a test created one outside the record
            if netns.exists(ns):
                subprocess.run(["ip", "netns", "del", ns], check=False)


def test_tiny_comes_up_fast_and_down_removes_exactly_it(tiny, small_lab):
    small_namespaces = {small_lab.namespace(site) for site in small_lab.sites}
    seconds = tiny.up()
    assert seconds < 15
    assert set(TINY_NAMESPACES) <= namespaces()
    assert ping(tiny, "r1", "r3", count=5).loss == 0
    assert ping(tiny, "r1", tiny.host_address("r3"), count=2).loss == 0
    pid = tiny.spawn("r2", ["sleep", "3600.75"], "reflector")
    assert tiny.down() is True
    assert not set(TINY_NAMESPACES) & namespaces()
    assert small_namespaces <= namespaces()  # the other lab untouched
    assert not netns.alive(pid)
    assert tiny.down() is False
    assert ping(small_lab, "cnty1a", "cnty2b", count=3).loss == 0


def test_up_on_a_half_created_lab_cleans_up_first(tiny):
    # What a crash half-way through `up` leaves: a record, some namespaces, one stray process.
    tiny.store.save(
        LabState(topology="tiny", topology_yaml=tiny.yaml_text, namespaces=TINY_NAMESPACES, prefix=run_prefix())
    )
    r1 = TINY_NAMESPACES[0]
    subprocess.run(["ip", "netns", "add", r1], check=True)
    stray = subprocess.Popen(["ip", "netns", "exec", r1, "sleep", "3600.5"])
    try:
        wait_until(lambda: stray.pid in netns.pids_in(r1), interval=0.01, what="the stray entering the namespace")
        assert not tiny.is_up
        tiny.up()
        assert tiny.is_up
        assert stray.wait(timeout=DEADLINE_S) is not None  # stopped by the clean-up
        assert ping(tiny, "r3", "r1", count=3).loss == 0
    finally:
        if stray.poll() is None:
            stray.kill()
            stray.wait()


def test_up_refuses_namespaces_it_did_not_create(tiny):
    r1, r2, _ = TINY_NAMESPACES
    subprocess.run(["ip", "netns", "add", r2], check=True)
    with pytest.raises(LabError, match=f"{r2} exist but no lab record names them"):
        tiny.up()
    assert netns.exists(r2)  # not ours, so not touched
    assert not netns.exists(r1)
    subprocess.run(["ip", "netns", "del", r2], check=True)


def test_a_fault_needs_the_lab_up(tiny):
    with pytest.raises(LabError, match="not up"):
        tiny.fault_loss("r1-r2", 0.1)


def test_reroute_without_an_alternate_is_refused(tiny):
    tiny.up()
    with pytest.raises(LabError, match="no alternate path from r1 to r3"):
        tiny.fault_reroute("r1", "r3")
    assert tiny.faults() == []


def test_running_lab_is_shared_and_torn_down_by_its_last_user(tmp_path):
    from lab.testing import running_lab

    with running_lab("tiny", tmp_path / "state") as first:
        with running_lab("tiny") as second:
            assert second is first
        assert first.is_up
        assert ping(first, "r1", "r3", count=2).loss == 0
    assert not any(netns.exists(ns) for ns in TINY_NAMESPACES)


def test_labs_of_a_killed_test_run_are_removed_by_the_next(tmp_path):
    from lab.testing import TEST_STATE_DIR, remove_stale_labs

    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer runs: the "killed" run
    store = StateStore(TEST_STATE_DIR / f"tiny-{dead.pid}")
    Lab.from_name("tiny", store, prefix=f"xl{dead.pid}-").up()
    assert netns.exists(f"xl{dead.pid}-r1")
    assert f"tiny-{dead.pid}" in remove_stale_labs()
    assert not netns.exists(f"xl{dead.pid}-r1") and not store.directory.exists()
