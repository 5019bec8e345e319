"""Real-traffic measurements between lab sites: ping statistics and hop lists.

Used by the lab's own tests to prove that faults do what they say, and handy for any
test that wants a quick independent check (these use iputils `ping`, not our probes).
"""

from __future__ import annotations

import re
import statistics
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from lab.lab import Lab

_REPLY = re.compile(r"icmp_seq=(\d+) .*time=([\d.]+) ms")
_FROM = re.compile(r"^From ([0-9a-f:]*[0-9a-f]):?(?: icmp_seq=\d+)? (.*)$", re.M)
_BYTES_FROM = re.compile(r"^\d+ bytes from ([0-9a-f:]*[0-9a-f]):? ", re.M)


@dataclass(frozen=True, slots=True)
class PingStats:
    sent: int
    rtts_ms: tuple[float, ...]  # one per reply received, in arrival order

    @property
    def received(self) -> int:
        return len(self.rtts_ms)

    @property
    def loss(self) -> float:
        return 1 - self.received / self.sent if self.sent else 1.0

    @property
    def median_ms(self) -> float:
        return statistics.median(self.rtts_ms) if self.rtts_ms else float("inf")

    @property
    def min_ms(self) -> float:
        return min(self.rtts_ms) if self.rtts_ms else float("inf")


def ping(
    lab: Lab,
    source: str,
    destination: str,
    *,
    count: int = 20,
    interval: float = 0.01,
    slice: str | None = None,
    wait: float = 2.0,
    size: int = 56,
) -> PingStats:
    """ping -6 from a site to a site (its loopback) or an address, in a slice (by DSCP)."""
    target = destination if ":" in destination else lab.address(destination)
    argv = ["ping", "-6", "-n", "-c", str(count), "-i", f"{interval:g}", "-s", str(size), "-W", f"{wait:g}"]
    if slice is not None:
        argv += ["-Q", str(lab.topology.slice(slice).tos)]
    # No -w: with a deadline, ping keeps sending until `count` replies arrive.
    argv.append(target)
    result = lab.exec(source, argv, timeout=count * interval + wait + 30)
    seen: dict[int, float] = {}
    for match in _REPLY.finditer(result.stdout):
        seen.setdefault(int(match.group(1)), float(match.group(2)))  # duplicates count once
    return PingStats(sent=count, rtts_ms=tuple(seen.values()))


def hop(lab: Lab, source: str, target: str, hop_limit: int, wait: float = 1.0) -> tuple[str | None, bool]:
    """Who answers a ping sent with `hop_limit`: (address or None, reached the target)."""
    result = lab.exec(source, ["ping", "-6", "-n", "-c", "1", "-t", str(hop_limit), "-W", f"{wait:g}", target])
    reached = _BYTES_FROM.search(result.stdout)
    if reached:
        return reached.group(1), True
    answered = _FROM.search(result.stdout)
    if answered and "Time exceeded" in answered.group(2):
        return answered.group(1), False
    return None, False


def hops(lab: Lab, source: str, destination: str, *, max_hops: int = 12) -> list[str]:
    """The hop list from `source` to `destination` as site names (traceroute with ping -t).

    Routers answer from their loopback (the lab's routes carry it as preferred source), so
    each address maps to a site. A silent hop shows as "*"; an unreachable target ends the list.
    All hop limits are probed at once, so a trace costs about one round trip.
    """
    target = destination if ":" in destination else lab.address(destination)
    with ThreadPoolExecutor(max_workers=max_hops) as pool:
        answers = list(pool.map(lambda h: hop(lab, source, target, h), range(1, max_hops + 1)))
    found: list[str] = []
    for address, reached in answers:
        found.append((lab.site_of(address) or address) if address else "*")
        if reached:
            return found
    while found and found[-1] == "*":
        found.pop()
    return found
