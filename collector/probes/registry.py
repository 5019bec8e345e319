"""Every probe kind by its one name, the same in the agent's configuration and plan, in
PathKey.kind on the wire, in the `probe` label of metrics and in `xnetmon probe KIND`.

`PROBERS` are the kinds the agent's scheduler runs, one request per target per tick, each
behind the `Prober` protocol (collector.probes.base). A new kind of that sort is a module
with its prober and socket-free session, a line here, and its tests. Traces are a kind of
their own schedule: path discovery (collector.agent.discovery) runs them one at a time,
every period and whenever a path seems to have moved.
"""

from __future__ import annotations

from collector.probes.base import Prober
from collector.probes.icmp import IcmpProber
from collector.probes.stamp import StampProber

PROBERS: dict[str, type[Prober]] = {prober.kind: prober for prober in (StampProber, IcmpProber)}
TRACE = "trace"
KINDS: tuple[str, ...] = (*PROBERS, TRACE)
