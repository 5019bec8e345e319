"""The lab helpers for test suites: a run's own namespace prefix, labs left by killed runs
removed (and nothing else), one lab shared by nested users, and healing with nothing to heal."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from lab import netns
from lab.lab import Lab
from lab.state import LabState, StateStore
from lab.testing import TEST_STATE_DIR, heal_everything, remove_stale_labs, run_prefix, running_lab
from lab.topology import source_text

pytestmark = pytest.mark.root


def a_dead_pid() -> int:
    gone = subprocess.Popen(["true"])
    gone.wait()
    return gone.pid


def test_a_runs_namespaces_carry_its_process_id():
    assert run_prefix() == f"xl{os.getpid()}-"


def test_a_lab_left_by_a_killed_run_is_torn_down_and_a_living_runs_is_kept():
    dead = a_dead_pid()
    stale = TEST_STATE_DIR / f"twin-{dead}"
    living = TEST_STATE_DIR / "twin-1"  # pid 1 never exits
    namespace = f"xlt{dead}-r1"
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    try:
        yaml_text, _ = source_text("tiny")
        StateStore(stale).save(LabState("tiny", yaml_text, namespaces=[namespace], prefix=f"xlt{dead}-", complete=True))
        living.mkdir(parents=True)
        assert stale.name in remove_stale_labs()  # other runs' stale labs may go too: that is the point
        assert not stale.exists() and not netns.exists(namespace)
        assert living.is_dir()
    finally:
        shutil.rmtree(living, ignore_errors=True)
        shutil.rmtree(stale, ignore_errors=True)
        subprocess.run(["ip", "netns", "del", namespace], check=False, capture_output=True)


def test_healing_a_lab_with_no_record_does_nothing(tmp_path):
    lab = Lab.from_name("tiny", StateStore(tmp_path), prefix=run_prefix())
    heal_everything(lab)
    assert lab.store.load() is None


@pytest.mark.lab
def test_nested_users_share_one_lab_and_the_last_one_out_tears_it_down(tmp_path):
    with running_lab("tiny", state_dir=tmp_path / "tiny") as outer:
        with running_lab("tiny") as inner:
            assert inner is outer and outer.is_up
        assert outer.is_up  # the outer user still has it
        namespaces = [outer.namespace(site) for site in outer.sites]
    assert not any(netns.exists(ns) for ns in namespaces)
    assert not (tmp_path / "tiny").exists()
