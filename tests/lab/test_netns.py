"""The lab's command and process plumbing: argv builders, failures that say what broke,
concurrent batches, processes named by pid and start time, and namespaces (as root)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from lab import netns
from tests.support import network_namespace, wait_until

IGNORES_SIGTERM = [
    sys.executable,
    "-c",
    "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(3600)",
]


def test_argv_builders_run_ip_tc_and_sysctl_in_the_namespace():
    assert netns.exec_argv("xl-r1", ["ping", "-c1", "::1"]) == ["ip", "netns", "exec", "xl-r1", "ping", "-c1", "::1"]
    assert netns.ip_batch_argv("xl-r1") == ["ip", "-n", "xl-r1", "-batch", "-"]
    assert netns.ip_batch_argv(None, force=True) == ["ip", "-force", "-batch", "-"]
    assert netns.tc_batch_argv("xl-r2") == ["tc", "-n", "xl-r2", "-batch", "-"]
    assert netns.sysctl_argv("xl-r1", {"net.ipv6.conf.all.forwarding": 1}) == [
        "ip",
        "netns",
        "exec",
        "xl-r1",
        "sysctl",
        "-q",
        "-w",
        "net.ipv6.conf.all.forwarding=1",
    ]


def test_a_failed_command_names_itself_its_status_its_error_and_its_batch():
    with pytest.raises(netns.CommandFailed) as caught:
        netns.run(["sh", "-c", "cat >/dev/null; echo 'bad line' >&2; exit 3"], stdin="a\nb\n")
    assert caught.value.returncode == 3 and caught.value.stderr == "bad line"
    assert (
        str(caught.value) == "`sh -c 'cat >/dev/null; echo '\"'\"'bad line'\"'\"' >&2; exit 3'` failed with "
        "status 3: bad line (batch input was 2 lines)"
    )
    assert netns.run(["sh", "-c", "exit 4"], check=False).returncode == 4


def test_batches_run_at_once_all_finish_and_the_first_failure_is_raised(tmp_path):
    # each command waits for the other's file: only running them together lets both finish
    a, b = tmp_path / "a", tmp_path / "b"
    wait_for = "touch {mine}; for i in $(seq 500); do [ -e {other} ] && exit 0; sleep 0.01; done; exit 1"
    results = netns.run_all(
        [
            (["sh", "-c", wait_for.format(mine=a, other=b)], None),
            (["sh", "-c", wait_for.format(mine=b, other=a)], None),
            (["cat"], "piped\n"),
        ]
    )
    assert [r.returncode for r in results] == [0, 0, 0] and results[2].stdout == "piped\n"
    with pytest.raises(netns.CommandFailed, match="status 5"):
        netns.run_all([(["sh", "-c", "exit 5"], None), (["touch", str(tmp_path / "c")], None)])
    assert (tmp_path / "c").exists()  # the others still ran


def test_a_process_is_named_by_pid_and_start_time_and_stopped_for_good():
    child = subprocess.Popen(IGNORES_SIGTERM, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "ready\n"
        started = netns.start_time(child.pid)
        assert netns.alive(child.pid) and netns.alive(child.pid, started)
        assert not netns.alive(child.pid, started + 1)  # another process that got the pid
        assert netns.cmdline(child.pid)[:2] == [sys.executable, "-c"]
        netns.stop(child.pid, started, grace=0.2)
        assert not netns.alive(child.pid, started)  # it ignores SIGTERM: SIGKILL followed (and it was reaped)
    finally:
        child.kill()
        child.wait()


def test_a_process_state_letter_follows_its_signals_until_it_is_gone():
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        wait_until(lambda: netns.state(sleeper.pid) == "S", what="the sleeper asleep")
        assert netns.state(sleeper.pid, sleeper.pid) == "S"  # its one thread, by the task's file
        os.kill(sleeper.pid, signal.SIGSTOP)
        wait_until(lambda: netns.state(sleeper.pid) == "T", what="the sleeper stopped")
        sleeper.kill()
        wait_until(lambda: netns.state(sleeper.pid) == "Z", what="the sleeper dead, not yet reaped")
        assert not netns.alive(sleeper.pid)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert netns.state(sleeper.pid) is None


def test_stopping_a_process_that_is_gone_or_another_is_harmless():
    child = subprocess.Popen(["true"])
    child.wait()
    assert netns.start_time(child.pid) is None and netns.cmdline(child.pid) == []
    netns.stop(child.pid, None, grace=0.1)
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        netns.stop_all([(sleeper.pid, netns.start_time(sleeper.pid) + 1)], grace=0.1)  # not the one recorded
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.root
def test_a_namespace_is_found_and_a_detached_process_runs_in_it_until_stopped(tmp_path):
    with network_namespace() as name:
        assert netns.exists(name) and name in netns.existing(name[:4])
        assert netns.namespace_inode(name) is not None and netns.pids_in(name) == []
        log = tmp_path / "logs" / "sleeper.log"
        pid = netns.spawn_detached(name, ["sh", "-c", "echo started; exec sleep 3600"], log)
        deadline = time.monotonic() + 10
        while "started" not in log.read_text() and time.monotonic() < deadline:  # its shell has run
            time.sleep(0.01)
        assert netns.pids_in(name) == [pid] and netns.cmdline(pid) == ["sleep", "3600"]
        netns.stop(pid, netns.start_time(pid), grace=2)
        assert netns.pids_in(name) == []
    assert not netns.exists(name) and netns.namespace_inode(name) is None
