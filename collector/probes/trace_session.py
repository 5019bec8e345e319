"""The logic of one Paris traceroute, free of sockets and clocks.

A trace sends `probes_per_hop` probes at each hop limit from `first_hop` up, several in
flight at once, and stops at the hop where the target (or a router refusing to forward)
answered: probes above it are not sent, and answers to those already sent are dropped.
Times come in from the caller, in nanoseconds, so the logic is testable with made-up
numbers; `collector.probes.trace` drives it over real sockets.

Results per probe are `HopProbe`s; `observation()` turns them into the `PathObservation`
the analyzer consumes (hop list and fingerprint). `HopReport` is the mtr-style table over
several rounds of the same flow, and `merge_paths` the per-hop next hops of multipath mode.
"""

from __future__ import annotations

import statistics
from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from collector.contract.records import FlowId, HopAnswer, HopProbe, PathObservation

PROTOCOLS = ("udp", "icmp", "tcp")
UDP_PORT = 33434  # the traditional traceroute port: nobody listens there, so targets answer port unreachable
TCP_PORT = 80  # an open port answers SYN-ACK, a closed one RST: either way the target answered


@dataclass(frozen=True)
class TraceSettings:
    target: str  # name for results
    slice: str  # slice name for results
    dscp: int = 0  # every probe carries it, so a slice's trace follows the slice's treatment
    protocol: str = "udp"
    probes_per_hop: int = 3
    first_hop: int = 1
    max_hops: int = 30
    timeout_ns: int = 1_000_000_000
    parallel: int = 16  # probes in flight at once (Debian traceroute's -N)

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol {self.protocol!r} is not one of {', '.join(PROTOCOLS)}")
        if not 1 <= self.first_hop <= self.max_hops <= 255:
            raise ValueError(f"hop limits must satisfy 1 <= first ({self.first_hop}) <= max ({self.max_hops}) <= 255")
        if self.probes_per_hop < 1:
            raise ValueError("at least one probe per hop")
        if not 0 <= self.dscp <= 63:
            raise ValueError(f"DSCP {self.dscp} is not in 0..63")


@dataclass(frozen=True, slots=True)
class Answer:
    """An answer as the socket layer matched it: which probe, who, when, what it says."""

    flow: int  # index of the flow (multipath mode traces several over one transport)
    wire_seq: int  # the sequence number the probe carried
    responder: str
    receive_ns: int
    answer: HopAnswer
    detail: str | None = None
    quoted_dscp: int | None = None


@dataclass(frozen=True, slots=True)
class TraceHop:
    """All probes sent at one hop limit."""

    hop: int
    probes: tuple[HopProbe, ...]

    @property
    def responders(self) -> tuple[str, ...]:
        """Who answered, in order of first answer (more than one: the path moved mid-trace,
        or a per-packet balancer)."""
        return tuple(dict.fromkeys(p.responder for p in self.probes if p.responder))

    @property
    def address(self) -> str | None:
        """The responder that answered most often (ties: the first), None for a silent hop."""
        counts = Counter(p.responder for p in self.probes if p.responder)
        if not counts:
            return None
        best = max(counts.values())
        return next(r for r in self.responders if counts[r] == best)


class TraceSession:
    """One trace of one flow: which probe to send next, what came back, when it is done."""

    def __init__(self, settings: TraceSettings, flow: FlowId) -> None:
        self.settings = settings
        self.flow = flow
        self._next = 0  # index of the next probe in hop-major order
        self._outstanding: OrderedDict[int, tuple[int, int]] = OrderedDict()  # seq -> (hop, sent ns)
        self._results: dict[int, HopProbe] = {}
        self.final_hop: int | None = None  # lowest hop where the trace ended
        self.late_answers = 0

    def _hop_of(self, seq: int) -> int:
        return self.settings.first_hop + seq // self.settings.probes_per_hop

    @property
    def last_hop(self) -> int:
        return self.final_hop if self.final_hop is not None else self.settings.max_hops

    # -- sending -------------------------------------------------------------------------

    def next_probe(self) -> tuple[int, int] | None:
        """(seq, hop limit) of the next probe to send, or None when the window is full or
        every needed probe has gone."""
        if len(self._outstanding) >= self.settings.parallel:
            return None
        hop = self._hop_of(self._next)
        if hop > self.last_hop:
            return None
        seq = self._next
        self._next += 1
        return seq, hop

    def on_sent(self, seq: int, sent_ns: int) -> None:
        self._outstanding[seq] = (self._hop_of(seq), sent_ns)

    def on_send_failed(self, seq: int, sent_ns: int, reason: str) -> None:
        """The kernel refused the probe (e.g. no route here): a star with the reason."""
        hop = self._hop_of(seq)
        self._results[seq] = HopProbe(hop, seq, sent_ns, HopAnswer.NONE, detail=reason)

    # -- answers -------------------------------------------------------------------------

    def on_answer(self, seq: int, answer: Answer) -> bool:
        """Record an answer to probe `seq`; False if it is late, a duplicate or above the end."""
        pending = self._outstanding.pop(seq, None)
        if pending is None:
            self.late_answers += 1
            return False
        hop, sent_ns = pending
        rtt = max(0, answer.receive_ns - sent_ns)
        self._results[seq] = HopProbe(
            hop, seq, sent_ns, answer.answer, answer.responder, rtt, answer.detail, answer.quoted_dscp
        )
        ends = answer.answer in (HopAnswer.REACHED, HopAnswer.UNREACHABLE)
        if ends and (self.final_hop is None or hop < self.final_hop):
            self._end_at(hop)
        return True

    def _end_at(self, hop: int) -> None:
        self.final_hop = hop
        # Probes above the end say nothing about this path: forget them, and their answers.
        for seq in [s for s, (h, _t) in self._outstanding.items() if h > hop]:
            del self._outstanding[seq]
        for seq in [s for s, p in self._results.items() if p.hop > hop]:
            del self._results[seq]

    def expire(self, now_ns: int) -> None:
        """Probes older than the timeout become stars."""
        timeout = self.settings.timeout_ns
        for seq, (hop, sent_ns) in list(self._outstanding.items()):
            if now_ns - sent_ns >= timeout:
                del self._outstanding[seq]
                self._results[seq] = HopProbe(hop, seq, sent_ns, HopAnswer.NONE)

    def next_deadline(self) -> int | None:
        """When the oldest outstanding probe times out."""
        if not self._outstanding:
            return None
        return min(sent for _hop, sent in self._outstanding.values()) + self.settings.timeout_ns

    @property
    def outstanding(self) -> int:
        return len(self._outstanding)

    @property
    def done(self) -> bool:
        return not self._outstanding and self._hop_of(self._next) > self.last_hop

    def flush(self) -> None:
        """At the end (or on interruption): whatever is still out is a star."""
        self.expire(1 << 62)

    # -- results -------------------------------------------------------------------------

    def probes(self) -> list[HopProbe]:
        return [self._results[s] for s in sorted(self._results)]

    def hops(self) -> tuple[TraceHop, ...]:
        """Hops 1st..last, silent ones included; without an end, trailing silence is dropped."""
        by_hop: dict[int, list[HopProbe]] = {}
        for probe in self.probes():
            by_hop.setdefault(probe.hop, []).append(probe)
        last = self.final_hop
        if last is None:
            answered = [h for h, ps in by_hop.items() if any(p.responder for p in ps)]
            last = max(answered, default=self.settings.first_hop - 1)
        return tuple(TraceHop(h, tuple(by_hop.get(h, ()))) for h in range(self.settings.first_hop, last + 1))

    @property
    def reached(self) -> bool:
        return self.final_hop is not None and any(
            p.answer is HopAnswer.REACHED for p in self._results.values() if p.hop == self.final_hop
        )

    def observation(self, source: str, observed_ns: int) -> PathObservation:
        # Hops below the first one probed are unknown, not absent: keep positions = hop limits.
        unprobed = (None,) * (self.settings.first_hop - 1)
        return PathObservation(
            source=source,
            target=self.settings.target,
            slice=self.settings.slice,
            flow=self.flow,
            hops=unprobed + tuple(h.address for h in self.hops()),
            reached=self.reached,
            observed_ns=observed_ns,
        )


# -- mtr-style report over rounds ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HopReport:
    """One row of the report: a hop's responder and its statistics over the rounds."""

    hop: int
    address: str | None  # most frequent responder
    others: tuple[str, ...]  # other responders seen at this hop
    sent: int
    received: int
    last_ns: int | None
    avg_ns: int | None
    best_ns: int | None
    worst_ns: int | None
    stdev_ns: int | None

    @property
    def loss_ratio(self) -> float:
        return (self.sent - self.received) / self.sent if self.sent else 0.0


def report(rounds: Sequence[Iterable[HopProbe]]) -> list[HopReport]:
    """The mtr table over rounds of one flow. The path ends at the lowest hop where any
    round reached the end; a probe above it in a round whose end probe was lost is dropped,
    and the lost end probe counts as loss at the end hop."""
    per_round = [list(r) for r in rounds]
    ends = [p.hop for r in per_round for p in r if p.answer in (HopAnswer.REACHED, HopAnswer.UNREACHABLE)]
    answered = [p.hop for r in per_round for p in r if p.responder]
    last = min(ends) if ends else max(answered, default=0)
    rows = []
    for hop in sorted({p.hop for r in per_round for p in r if p.hop <= last}):
        probes = [p for r in per_round for p in sorted(r, key=lambda p: p.seq) if p.hop == hop]
        rtts = [p.rtt_ns for p in probes if p.rtt_ns is not None]
        counts = Counter(p.responder for p in probes if p.responder)
        order = list(dict.fromkeys(p.responder for p in probes if p.responder))
        address = max(order, key=lambda r: counts[r]) if order else None
        rows.append(
            HopReport(
                hop=hop,
                address=address,
                others=tuple(r for r in order if r != address),
                sent=len(probes),
                received=len(rtts),
                last_ns=rtts[-1] if rtts else None,
                avg_ns=round(statistics.fmean(rtts)) if rtts else None,
                best_ns=min(rtts) if rtts else None,
                worst_ns=max(rtts) if rtts else None,
                # mtr's StDev: the sample standard deviation of the round trips.
                stdev_ns=round(statistics.stdev(rtts)) if len(rtts) > 1 else (0 if rtts else None),
            )
        )
    return rows


# -- multipath ---------------------------------------------------------------------------------


def merge_paths(observations: Sequence[PathObservation]) -> list[dict[str, list[int]]]:
    """Per hop, each responder and the flows (indexes into `observations`) that saw it:
    more than one responder at a hop is an ECMP branch there."""
    depth = max((len(o.hops) for o in observations), default=0)
    merged: list[dict[str, list[int]]] = [{} for _ in range(depth)]
    for index, observation in enumerate(observations):
        for hop, address in enumerate(observation.hops):
            merged[hop].setdefault(address or "*", []).append(index)
    return merged


def flows_needed(branches: int, confidence: float = 0.95) -> int:
    """How many random flows find all of `branches` equal-cost next hops with `confidence`
    (the stopping rule of the Multipath Detection Algorithm, by the union bound)."""
    if branches <= 1:
        return 1
    n = branches
    while branches * ((branches - 1) / branches) ** n > 1 - confidence:
        n += 1
    return n


__all__ = [
    "PROTOCOLS",
    "Answer",
    "HopReport",
    "TraceHop",
    "TraceSession",
    "TraceSettings",
    "flows_needed",
    "merge_paths",
    "report",
]
