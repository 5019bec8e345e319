"""On-demand probes run apart from the API's reads: only to configured targets, at most
`max_in_flight` at once, on threads of their own.

A probe takes seconds (count x interval, plus its timeout). Run on the server's shared thread
pool, 40 slow probes filled it and `/healthz` waited behind them; here they have their own
executor, and one probe beyond the bound is answered at once (429) instead of queued.

Allowed targets: the addresses the agents' windows report (their configured targets), and any
address inside `allowed` (addresses or prefixes). Anything else is refused: the analyzer must not
become a way to probe arbitrary hosts from a site.
"""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import threading
from collections.abc import Callable, Collection, Iterable
from concurrent.futures import ThreadPoolExecutor

MAX_IN_FLIGHT = 8

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TooManyProbes(Exception):
    """Every probe slot is taken."""


class AgentUnreachable(Exception):
    """The named agent cannot be asked now (no bus, or no answer on it)."""


class TargetNotAllowed(ValueError):
    """The address is neither an agent's target nor in the allow-list."""


class ProbeRuns:
    def __init__(
        self,
        prober: Callable,
        known_targets: Callable[[], Iterable[str]],
        allowed: Collection[str] = (),
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self.prober = prober
        self.known_targets = known_targets
        self.allowed: tuple[Network, ...] = tuple(ipaddress.ip_network(a, strict=False) for a in allowed)
        self.max_in_flight = max_in_flight
        self._in_flight = 0
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_in_flight, thread_name_prefix="xnetmon-analyzer-probe")

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def check_target(self, target: str) -> None:
        address = ipaddress.ip_address(target)
        if any(address in network for network in self.allowed):
            return
        if any(_same_address(address, known) for known in self.known_targets()):
            return
        raise TargetNotAllowed(
            f"target: {target} is not a target of any agent here"
            + (f" nor in the allowed prefixes ({', '.join(map(str, self.allowed))})" if self.allowed else "")
        )

    async def run(self, request) -> dict:
        """The prober's result for `request`, or TooManyProbes at once when every slot is taken."""
        with self._lock:
            if self._in_flight >= self.max_in_flight:
                raise TooManyProbes(f"{self.max_in_flight} probes are running: try again when one has finished")
            self._in_flight += 1
        try:
            if inspect.iscoroutinefunction(self.prober):
                return await self.prober(request)
            return await asyncio.get_running_loop().run_in_executor(self._executor, self.prober, request)
        finally:
            with self._lock:
                self._in_flight -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _same_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address, text: str) -> bool:
    try:
        return ipaddress.ip_address(text) == address
    except ValueError:  # an agent's target given by name: never equal to an address
        return False
