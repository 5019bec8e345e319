"""A directory held by one process at a time: the second is told the holder's pid; the hold
ends with its holder, also when the holder is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from collector.system.dir_lock import LOCK_NAME, DirectoryInUse, hold_directory
from tests.support import DEADLINE_S, REPO

HOLDER = (
    "import sys; from collector.system.dir_lock import hold_directory; "
    "hold_directory(sys.argv[1]); print('held', flush=True); sys.stdin.read()"
)


def test_a_second_hold_is_refused_naming_the_holder_until_the_first_is_released(tmp_path):
    first = hold_directory(tmp_path)
    with pytest.raises(DirectoryInUse, match=f"{tmp_path} is held by pid {os.getpid()}") as refused:
        hold_directory(tmp_path)
    assert refused.value.holder_pid == os.getpid() and refused.value.directory == tmp_path
    first.release()
    first.release()  # twice is harmless
    hold_directory(tmp_path).release()


def test_a_lock_file_left_by_a_dead_process_holds_nothing(tmp_path):
    (tmp_path / LOCK_NAME).write_text("4194303\n")
    held = hold_directory(tmp_path)
    assert (tmp_path / LOCK_NAME).read_text() == f"{os.getpid()}\n"
    held.release()


def test_another_process_holds_it_until_it_is_killed(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(DirectoryInUse) as refused:
            hold_directory(tmp_path)
        assert refused.value.holder_pid == holder.pid
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(DEADLINE_S)
    hold_directory(tmp_path).release()


def test_a_directory_that_is_not_there_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        hold_directory(tmp_path / "absent")
