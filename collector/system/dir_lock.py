"""An exclusive hold on a directory of state, for as long as its holder lives: a second
process that would use the same state (two analyzers on one `--state-dir`, two agents on one
spool) is refused before it touches anything, and told which process holds it.

The hold is an flock on DIR/lock, in which the holder writes its pid. The kernel lets go of
it when the holder's descriptor closes, at `release()` or at the holder's death however it
dies: a lock file left behind by a crash holds nothing.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = "lock"
_PID_BYTES = 32  # more than any pid takes; what else is in the file is not read


class DirectoryInUse(Exception):
    """Another process (or another hold in this one) has the directory."""

    def __init__(self, directory: Path, holder_pid: int | None) -> None:
        self.directory = directory
        self.holder_pid = holder_pid
        self.holder = f"pid {holder_pid}" if holder_pid is not None else "a process that has not yet written its pid"
        super().__init__(f"{directory} is held by {self.holder}")


class DirectoryLock:
    """The hold `hold_directory` took; `release()` gives it up (else the process's end does)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def hold_directory(directory: str | os.PathLike) -> DirectoryLock:
    """Hold `directory` (which must exist). Raises DirectoryInUse when it is held already,
    OSError when its lock file cannot be opened."""
    path = Path(directory) / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder_pid(fd)
        os.close(fd)
        raise DirectoryInUse(Path(directory), holder) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return DirectoryLock(path, fd)


class StateDirectoryUnusable(Exception):
    """`hold_state_directory` could not make or hold the directory; the message says why."""


def hold_state_directory(directory: str | os.PathLike, called: str, each_needs: str) -> DirectoryLock:
    """`directory` made if missing, then held. Raises StateDirectoryUnusable worded for the
    operator: what the directory is `called` ("state directory") and what `each_needs` ("each
    analyzer needs its own --state-dir") when another process holds it."""
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
        return hold_directory(directory)
    except DirectoryInUse as exc:
        raise StateDirectoryUnusable(f"{called} {directory} is in use by {exc.holder}: {each_needs}") from None
    except OSError as exc:
        raise StateDirectoryUnusable(f"cannot use {called} {directory}: {exc.strerror or exc}") from None


def _holder_pid(fd: int) -> int | None:
    written = os.pread(fd, _PID_BYTES, 0).strip()
    return int(written) if written.isdigit() else None
