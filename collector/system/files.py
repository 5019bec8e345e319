"""Files that must survive a crash whole: state an agent or the analyzer reloads at start."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

# A temporary this old was left by a writer that died (a crash, a power loss, SIGKILL): a
# live one is renamed within seconds, so the next write of the same file removes it.
LEFTOVER_AGE_S = 300.0


def write_atomically(path: str | os.PathLike, text: str) -> None:
    """Replace `path` with `text` so that a crash leaves the old file or the new one, never half.
    The directory is fsync'd after the rename, so that the new name itself survives a power
    loss; temporaries that earlier writers of `path` left behind are removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}."
    _remove_leftovers(path.parent, prefix)
    fd, temporary = tempfile.mkstemp(prefix=prefix, dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def fsync_directory(directory: str | os.PathLike) -> None:
    """Make the names in `directory` (a file just created or renamed there) durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_leftovers(directory: Path, prefix: str) -> None:
    cutoff = time.time() - LEFTOVER_AGE_S
    for leftover in directory.glob(f"{prefix}*"):
        with contextlib.suppress(OSError):  # gone already, or not ours to remove: harmless
            if leftover.is_file() and leftover.stat().st_mtime < cutoff:
                leftover.unlink()
