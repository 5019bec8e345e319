"""Marked business traffic for the all-in-one on the lab: steady flows per slice between
county sites across the core (`lab.business_traffic`), marked at their ingress site as a PE
router would mark them (`collector.capture.altmark_ingress`, one marker per transport), so
the agents' counting points have real marked traffic to count from the first minute.

Each pair (sender, receiver) runs the receiver in the receiving site, a UDP and a TCP marker
in the sending site (mangle POSTROUTING selects the business ports towards the receiver:
the agents' probes and the bus pass unmarked), and the sender there. Each marker numbers its
flows from 0 after its own index (the high bits of its FlowMonIDs): two markers of one site
sharing the site's index gave a UDP and a TCP flow the same FlowMonID, and the counting
points put both in the slice of the first seen. So the index is the sending site's index in
the lab topology times the markers per site, plus the marker's place: unique across the lab.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lab.business_traffic import FLOWS

# every pair crosses the core, one each way; the agents on all four and the core count them
BUSINESS_PAIRS = (("cnty1a", "cnty2a"), ("cnty2b", "cnty1b"))
MARKER_QUEUES = {"udp": 21, "tcp": 22}  # NFQUEUE numbers in the sending site
BLOCK_S = 1.0
STOP_TIMEOUT_S = 15.0


@dataclass(frozen=True, slots=True)
class Business:
    """One process of the business traffic: what it is and the argv that runs it (in its site)."""

    name: str
    site: str
    argv: tuple[str, ...]


def marker_args(lab, sender: str, receiver: str, protocol: str) -> list[str]:
    """The ingress marker's arguments for the business flows of `protocol` from `sender` to `receiver`."""
    ports = [str(flow.port) for flow in FLOWS if (flow.kind == "udp-cbr") == (protocol == "udp")]
    site = [site.name for site in lab.topology.sites].index(sender)
    index = site * len(MARKER_QUEUES) + list(MARKER_QUEUES).index(protocol)
    args = ["--queue", str(MARKER_QUEUES[protocol]), "--site-index", str(index), "--slice", "business"]
    args += ["--destination", f"{lab.address(receiver)}/128", "--protocol", protocol]
    for port in ports:
        args += ["--port", port]
    return [*args, "--block-s", str(BLOCK_S), "--install-rule"]


def business_processes(lab, pairs: Sequence[tuple[str, str]] = BUSINESS_PAIRS) -> tuple[list[Business], list[Business]]:
    """(receivers and markers, senders): the first start before the agents count, the senders
    once every counting point is up (a point that starts mid-block would count less of it)."""
    python = sys.executable
    ready, senders = [], []
    for sender, receiver in pairs:
        serve = [python, "-m", "lab.business_traffic", "serve", "--bind", lab.address(receiver)]
        ready.append(Business(f"business-serve-{receiver}", receiver, tuple(serve)))
        for protocol in MARKER_QUEUES:
            marker = [python, "-m", "collector.capture.altmark_ingress", *marker_args(lab, sender, receiver, protocol)]
            ready.append(Business(f"marker-{protocol}-{sender}", sender, tuple(marker)))
        send = [python, "-m", "lab.business_traffic", "send", "--to", lab.address(receiver)]
        senders.append(Business(f"business-send-{sender}", sender, (*send, "--bind", lab.address(sender))))
    return ready, senders


@contextmanager
def running_business(lab, workdir: Path, counting_up: Callable[[], None]) -> Iterator[list[Business]]:
    """Receivers and markers, then (once `counting_up` returned: the agents count) the senders,
    each logging to `workdir`/NAME.log; stopped senders first, so the markers see the last
    packets and remove their ip6tables rules."""
    ready, senders = business_processes(lab)
    started: list[subprocess.Popen] = []
    try:
        for process in ready:
            started.append(_start(lab, process, workdir))
        counting_up()
        for process in senders:
            started.append(_start(lab, process, workdir))
        yield [*ready, *senders]
    finally:
        for proc in reversed(started):
            proc.terminate()
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _start(lab, process: Business, workdir: Path) -> subprocess.Popen:
    with (workdir / f"{process.name}.log").open("w") as log:
        return subprocess.Popen(lab.exec_argv(process.site, list(process.argv)), stdout=log, stderr=subprocess.STDOUT)
