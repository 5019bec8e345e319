"""Helpers shared by the benchmarks: statistics, child processes, tables, result files.

Benchmarks are scripts (`.venv/bin/python bench/NAME.py`), not part of the installed
package; they import this module from their own directory.
"""

from __future__ import annotations

import json
import os
import platform
import select
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from xnetmon.free_ports import free_port

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
VENV_BIN = REPO / ".venv" / "bin"
XNETMON = str(VENV_BIN / "xnetmon") if (VENV_BIN / "xnetmon").exists() else "xnetmon"
PYTHON = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable


# -- statistics -----------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: list[float]) -> float:
    return percentile(values, 50.0)


def ratio(a: float, b: float) -> float | None:
    return a / b if b else None


# -- child processes ------------------------------------------------------------------------


def free_udp_port(address: str = "::1") -> int:
    return free_port(address, socket.SOCK_DGRAM)


class Server:
    """A long-running child (reflector or echo loop) that prints a line containing `ready`
    once it listens. Stopped with SIGTERM (its statistics go to stdout), then SIGKILL."""

    def __init__(self, argv: list[str], ready: str = "listening", name: str = "server") -> None:
        self.argv = argv
        self.ready = ready
        self.name = name
        self.proc: subprocess.Popen | None = None
        self.output = ""

    def start(self, timeout: float = 15.0) -> Server:
        self.proc = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        deadline = time.monotonic() + timeout
        seen = []
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if ready:
                line = self.proc.stdout.readline()
                if not line:  # exited
                    break
                seen.append(line)
                if self.ready in line:
                    return self
            elif self.proc.poll() is not None:
                break
        self.stop()
        raise RuntimeError(f"{self.name} did not start: {' '.join(self.argv)}\n{''.join(seen)}{self.output}")

    def stop(self) -> str:
        proc = self.proc
        if proc is None:
            return self.output
        self.proc = None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                out, _ = proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
        else:
            out, _ = proc.communicate()
        self.output += out or ""
        return self.output

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run(argv: list[str], timeout: float, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited {result.returncode}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        )
    return result


def cpu_seconds(pid: int | None = None) -> float:
    """CPU seconds (user and system, every thread, ended ones included) a process has used,
    this one's when `pid` is None. Read from the process's CPU-time clock, which counts
    nanoseconds (and still answers for an exited child not yet reaped): /proc's 10 ms ticks
    read zero for a short smoke round and are several per cent of what a starved server
    gets in a measurement on a shared machine."""
    if pid is None:
        return time.process_time()
    return time.clock_gettime(((~pid) << 3) | 2)  # Linux's CPU clock of process `pid` (CPUCLOCK_SCHED)


# -- output ---------------------------------------------------------------------------------


def table(headers: list[str], rows: list[list[object]]) -> str:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(headers, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for row in cells:
        lines.append("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))))
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    return str(value)


def environment() -> dict:
    return {
        "host": platform.node(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": list(os.getloadavg()),
    }


def write_result(name: str, payload: dict, output: str | None) -> Path:
    if output:
        path = Path(output)
    else:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        path = RESULTS_DIR / f"{name}-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    return path


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        sys.exit(f"{what} needs root (network namespaces, ping intervals below 0.2 s, CPU pinning)")


def unwind_on_termination() -> None:
    """SIGTERM and SIGHUP raise SystemExit, so that the `finally` blocks that remove a
    benchmark's namespaces and processes run (their default action ends the process at once)."""

    def terminate(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)


# -- two namespaces joined by a veth pair --------------------------------------------------


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


def namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def pin(pids: list[int], cpus: list[int]) -> None:
    """Every thread of the i-th process on the i-th CPU (round robin): a process woken by
    SIGCONT next to another on one CPU would wait for the load balancer to move it."""
    for i, pid in enumerate(pids):
        for task in Path(f"/proc/{pid}/task").iterdir():
            os.sched_setaffinity(int(task.name), {cpus[i % len(cpus)]})


def in_namespace(ns: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


def set_sysctl(ns: str, setting: str) -> None:
    subprocess.run(in_namespace(ns, "sysctl", "-qw", setting), check=True)


def add_loopback_addresses(ns: str, addresses: list[str]) -> None:
    """Many /128s on a namespace's loopback in one `ip -batch` (thousands in well under a second)."""
    batch = "".join(f"address add {a}/128 dev lo nodad\n" for a in addresses)
    subprocess.run(["ip", "-n", ns, "-batch", "-"], input=batch, text=True, check=True)


class NamespacePair:
    """Two namespaces joined by a veth pair with one /64, for a benchmark's peers: created on
    entry (after removing what a crashed run with the same names left), removed on exit with
    every process still inside. Subclasses add targets, routes and sysctls in `configure()`
    and may name another address for `reach_address`, pinged from `ns_a` before the run."""

    def __init__(self, ns_a: str, ns_b: str, if_a: str, if_b: str, addr_a: str, addr_b: str) -> None:
        self.ns_a, self.ns_b = ns_a, ns_b
        self.if_a, self.if_b = if_a[:15], if_b[:15]  # interface names are at most 15 octets
        self.addr_a, self.addr_b = addr_a, addr_b

    def __enter__(self):
        self.remove()
        try:
            for ns in (self.ns_a, self.ns_b):
                ip("netns", "add", ns)
                ip("-n", ns, "link", "set", "lo", "up")
            ip(
                "link",
                "add",
                self.if_a,
                "netns",
                self.ns_a,
                "type",
                "veth",
                "peer",
                "name",
                self.if_b,
                "netns",
                self.ns_b,
            )
            for ns, dev, address in ((self.ns_a, self.if_a, self.addr_a), (self.ns_b, self.if_b, self.addr_b)):
                ip("-n", ns, "addr", "add", f"{address}/64", "dev", dev, "nodad")
                ip("-n", ns, "link", "set", dev, "up")
            self.configure()
            self.wait_reachable()
        except BaseException:
            self.remove()
            raise
        return self

    def configure(self) -> None:
        """What the benchmark adds on top of the pair (targets, routes, sysctls)."""

    @property
    def reach_address(self) -> str:
        return self.addr_b

    def wait_reachable(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            probe = subprocess.run(
                in_namespace(self.ns_a, "ping", "-6", "-n", "-c", "1", "-W", "1", self.reach_address),
                capture_output=True,
                text=True,
            )
            if probe.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.reach_address} not reachable from {self.ns_a}")

    def remove(self) -> None:
        present = namespaces()
        for ns in (self.ns_a, self.ns_b):
            if ns not in present:
                continue
            for pid in subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    def __exit__(self, *exc: object) -> None:
        self.remove()
