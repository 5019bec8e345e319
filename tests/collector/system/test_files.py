"""Files replaced whole or not at all."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from collector.system.files import LEFTOVER_AGE_S, write_atomically
from tests.support import DEADLINE_S, REPO


def test_the_file_and_its_missing_directories_are_made_with_the_text(tmp_path):
    path = tmp_path / "state" / "deep" / "spool.json"
    write_atomically(path, '{"windows": 1}')
    assert path.read_text() == '{"windows": 1}'
    write_atomically(str(path), "second")
    assert path.read_text() == "second"
    assert [p.name for p in path.parent.iterdir()] == ["spool.json"]  # no temporary file left


def test_a_write_that_fails_leaves_the_old_file_whole_and_no_temporary(tmp_path):
    path = tmp_path / "templates.json"
    path.write_text("old")
    with pytest.raises(TypeError):
        write_atomically(path, b"not text")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["templates.json"]


def test_temporaries_a_dead_writer_left_are_removed_by_the_next_write(tmp_path):
    path = tmp_path / "analyzer-store.json"
    leftover = tmp_path / ".analyzer-store.json.k2j4x9"  # a writer killed before its rename
    leftover.write_text("half")
    old = time.time() - LEFTOVER_AGE_S - 1
    os.utime(leftover, (old, old))
    recent = tmp_path / ".analyzer-store.json.a8b7c6"  # another writer, still busy
    recent.write_text("busy")
    other = tmp_path / ".templates.json.z9y8x7"  # another file's: not this writer's business
    other.write_text("x")
    os.utime(other, (old, old))
    write_atomically(path, "whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, recent.name, other.name])


@pytest.mark.tool("strace")
def test_the_directory_is_fsynced_after_the_rename(tmp_path):
    path = tmp_path / "state.json"
    script = f"from collector.system.files import write_atomically; write_atomically({str(path)!r}, 'x')"
    traced = subprocess.run(
        ["strace", "-f", "-y", "-e", "trace=rename,renameat,renameat2,fsync", sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=DEADLINE_S,
    )
    assert traced.returncode == 0, traced.stderr
    calls = [line for line in traced.stderr.splitlines() if line.startswith(("rename", "fsync"))]
    renamed = next(i for i, line in enumerate(calls) if line.startswith("rename") and "state.json" in line)
    directory_synced = [line for line in calls[renamed + 1 :] if line.startswith("fsync(") and f"<{tmp_path}>)" in line]
    assert directory_synced, calls
