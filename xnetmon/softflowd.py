"""softflowd as the all-in-one monitor's flow exporter: one process per captured interface,
exporting IPFIX to the agent of its site, so that the agents' xnet_flow_* series and
`/flows/top` show what the slices actually carry.

Debian's softflowd 1.1.0 sees packets a capture block at a time: libpcap gives it a
TPACKET_V3 ring of 256 KiB blocks (it never asks for immediate mode, and no option of it
does), it polls without a timeout, and here (kernel 6.18) a block reached it only once it was
full, about 1,300 probe packets. A lab county's link carries some 600 probe packets a
second, so a block every 2-3 s; loopback (about 40 a second) only every half minute. Its
flows then leave after at most `maxlife` (checked every `expint`, when it wakes), so in the
lab flows reach the receiver within about 10 s of their packets.

It exports IPv6 flows with traffic class 0, so the receiver puts them all in the slice of
DSCP 0 (best-effort) unless the agent classifies by something softflowd does export.
softflowd needs root (a packet socket); when it is not on PATH the all-in-one runs without flows.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

FLOW_PORT = 4739  # IANA's IPFIX port
# Short timeouts: flows reach the receiver within seconds, not softflowd's default hour.
# expint is how often it looks for flows to expire (and how many go in one datagram).
SOFTFLOWD_TIMEOUTS = {"maxlife": 5, "expint": 1, "udp": 5, "icmp": 5, "tcp": 5, "general": 5}
PORT_WAIT_S = 30.0


def softflowd_available() -> bool:
    return shutil.which("softflowd") is not None


def softflowd_argv(
    interface: str, collector: tuple[str, int], control: Path, pidfile: Path, bpf: str = "ip6"
) -> list[str]:
    """softflowd in the foreground on `interface`, exporting IPFIX to `collector`; its control
    socket (`softflowctl -c`) and pid file go where the caller says, not to /var/run."""
    host, port = collector
    timeouts = [arg for name, seconds in SOFTFLOWD_TIMEOUTS.items() for arg in ("-t", f"{name}={seconds}")]
    return [
        "softflowd",
        "-d",
        "-i",
        interface,
        "-n",
        f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "-v",
        "10",
        "-c",
        str(control),
        "-p",
        str(pidfile),
        *timeouts,
        bpf,
    ]


def udp_port_bound(pid: int, port: int) -> bool:
    """Whether a UDP socket is bound to `port` in the network namespace of process `pid`
    (/proc/PID/net is that process's namespace's view)."""
    wanted = f":{port:04X}"
    for table in ("udp6", "udp"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/net/{table}") as handle:
            next(handle, None)  # the column titles
            if any(line.split()[1].endswith(wanted) for line in handle):
                return True
    return False


def cpu_seconds(pid: int) -> float:
    """CPU time a process has used so far (0 when it is gone). schedstat counts nanoseconds,
    where /proc/PID/stat's clock ticks (10 ms) would round softflowd's use down to nothing."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


@dataclass
class Exporter:
    site: str
    interface: str
    process: subprocess.Popen
    started: float = field(default_factory=time.monotonic)

    def cpu_share(self) -> float:
        """CPU time used per second of running (0.01: one per cent of a core)."""
        return cpu_seconds(self.process.pid) / max(time.monotonic() - self.started, 1e-3)


class SoftflowdFleet:
    """The softflowd processes of a deployment; `stop` ends every one (SIGTERM: softflowd
    exports what it still holds, then exits)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.exporters: list[Exporter] = []

    def start(
        self,
        site: str,
        interface: str,
        collector: tuple[str, int],
        in_site: Callable[[str, Sequence[str]], list[str]],
        bpf: str = "ip6",
    ) -> Exporter:
        name = f"softflowd-{site}-{interface}"
        argv = in_site(
            site, softflowd_argv(interface, collector, self.workdir / f"{name}.ctl", self.workdir / f"{name}.pid", bpf)
        )
        with (self.workdir / f"{name}.log").open("w") as log:
            process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        exporter = Exporter(site, interface, process)
        self.exporters.append(exporter)
        return exporter

    def cpu_by_site(self) -> dict[str, float]:
        """Each site's softflowd CPU share (summed over its interfaces)."""
        shares: dict[str, float] = {}
        for exporter in self.exporters:
            shares[exporter.site] = shares.get(exporter.site, 0.0) + exporter.cpu_share()
        return shares

    def stop(self) -> None:
        for exporter in self.exporters:
            with contextlib.suppress(ProcessLookupError):
                exporter.process.send_signal(signal.SIGCONT)  # a lab fault may have stopped it
                exporter.process.terminate()
        for exporter in self.exporters:
            try:
                exporter.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                exporter.process.kill()
                exporter.process.wait()
        self.exporters = []


def wait_until_bound(pids: dict[str, int], port: int, timeout: float = PORT_WAIT_S) -> set[str]:
    """The keys of `pids` whose process has bound UDP `port` within `timeout` seconds."""
    bound: set[str] = set()
    deadline = time.monotonic() + timeout
    while True:
        bound |= {key for key, pid in pids.items() if key not in bound and udp_port_bound(pid, port)}
        if len(bound) == len(pids) or time.monotonic() > deadline:
            return bound
        time.sleep(0.2)
