"""Thin wrappers around `ip`, `tc`, `ip6tables` and `sysctl`, run in a named namespace.

Bring-up speed comes from batching: one `ip -batch` / `tc -batch` per namespace rather
than one process per address, route or class. Failures raise CommandFailed with the
command and its error text, so the caller can report which step broke.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

NETNS_DIR = Path("/run/netns")


class CommandFailed(RuntimeError):
    def __init__(self, argv: Sequence[str], returncode: int, stderr: str, stdin: str | None = None):
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr.strip()
        shown = shlex.join(self.argv)
        detail = f": {self.stderr}" if self.stderr else ""
        if stdin and self.stderr:
            detail += f" (batch input was {len(stdin.splitlines())} lines)"
        super().__init__(f"`{shown}` failed with status {returncode}{detail}")


def run(
    argv: Sequence[str], *, stdin: str | None = None, check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess:
    done = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise CommandFailed(argv, done.returncode, done.stderr, stdin)
    return done


def run_all(
    commands: Iterable[tuple[Sequence[str], str | None]], *, check: bool = True
) -> list[subprocess.CompletedProcess]:
    """Run independent commands concurrently (one per namespace, typically) and wait for all."""
    started = []
    for argv, stdin in commands:
        process = subprocess.Popen(
            list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        started.append((argv, stdin, process))
    results, failures = [], []
    for argv, stdin, process in started:
        out, err = process.communicate(stdin, timeout=120)
        results.append(subprocess.CompletedProcess(argv, process.returncode, out, err))
        if process.returncode != 0:
            failures.append(CommandFailed(argv, process.returncode, err, stdin))
    if check and failures:
        raise failures[0]
    return results


def exec_argv(namespace: str, argv: Sequence[str]) -> list[str]:
    return ["ip", "netns", "exec", namespace, *argv]


def ip_batch_argv(namespace: str | None, *, force: bool = False) -> list[str]:
    argv = ["ip"]
    if namespace:
        argv += ["-n", namespace]
    if force:
        argv.append("-force")
    return argv + ["-batch", "-"]


def tc_batch_argv(namespace: str) -> list[str]:
    return ["tc", "-n", namespace, "-batch", "-"]


def sysctl_argv(namespace: str, settings: dict[str, str | int]) -> list[str]:
    return exec_argv(namespace, ["sysctl", "-q", "-w", *(f"{k}={v}" for k, v in settings.items())])


def exists(namespace: str) -> bool:
    return (NETNS_DIR / namespace).exists()


def existing(prefix: str) -> list[str]:
    if not NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(prefix))


def namespace_inode(namespace: str) -> int | None:
    try:
        return os.stat(NETNS_DIR / namespace).st_ino
    except OSError:
        return None


def pids_in(namespace: str) -> list[int]:
    """Processes whose network namespace is `namespace` (what `ip netns pids` prints)."""
    inode = namespace_inode(namespace)
    if inode is None:
        return []
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.stat(entry / "ns" / "net").st_ino == inode:
                found.append(int(entry.name))
        except OSError:
            continue  # exited meanwhile, or a kernel thread
    return sorted(found)


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _stat_fields(path: str) -> list[str] | None:
    """A /proc stat file's fields after the command name (the state letter first), None once
    the process is gone. The command name (field 2) may contain spaces; fields after it are plain."""
    try:
        stat = Path(path).read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def start_time(pid: int) -> int | None:
    """Clock ticks since boot when `pid` started: with the pid, it names one process for good."""
    fields = _stat_fields(f"/proc/{pid}/stat")
    return int(fields[19]) if fields is not None else None


def state(pid: int, thread: int | None = None) -> str | None:
    """The state letter of `pid` (its main thread), or of one of its threads: R running, S
    sleeping, T stopped, Z zombie, ...; None once it is gone."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    fields = _stat_fields(path)
    return fields[0] if fields is not None else None


def alive(pid: int, started: int | None = None) -> bool:
    fields = _stat_fields(f"/proc/{pid}/stat")  # one reading for the state and the start time
    if fields is None or fields[0] == "Z":
        return False
    return started is None or int(fields[19]) == started


def stop(pid: int, started: int | None = None, grace: float = 2.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds, only if `pid` is still the same process."""
    stop_all([(pid, started)], grace)


def stop_all(processes: Sequence[tuple[int, int | None]], grace: float = 2.0) -> None:
    """Stop several processes at once: all get SIGTERM, the ones left after `grace` SIGKILL."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 1.0)):
        living = [(pid, started) for pid, started in processes if alive(pid, started)]
        for pid, _ in living:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while living and time.monotonic() < deadline:
            for pid, _ in living:
                reap(pid)
            living = [(pid, started) for pid, started in living if alive(pid, started)]
            if living:
                time.sleep(0.02)
        if not living:
            return


def reap(pid: int) -> None:
    # Our own children stay zombies until waited for; others are reaped by their parent.
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def spawn_detached(namespace: str, argv: Sequence[str], log: Path, cwd: str | None = None) -> int:
    """Start `argv` inside `namespace`, outliving this process (own session, output to `log`).

    Returns the pid of the command itself: `ip netns exec` execs it in place.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen(
            exec_argv(namespace, argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            cwd=cwd if cwd and os.path.isdir(cwd) else None,
        )
    return process.pid
