"""The records that flow between xnetmon's parts.

These names are the contract of DESIGN.md ("Data that flows"): collectors produce them,
the analyzer consumes them. Fields may grow; existing ones keep their meaning. Hot-path
records are frozen, slotted dataclasses; pydantic models live at the edges (config, API).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True, slots=True)
class Slice:
    """A network slice as the data plane marks it."""

    name: str
    dscp: int  # 0..63, the traffic class probes of this slice carry
    slice_id: int | None = None  # 32-bit slice/NRP ID of the Hop-by-Hop option, if used
    flow_label: int | None = None  # fixed IPv6 flow label for probes, if pinned


@dataclass(frozen=True, slots=True)
class Target:
    """Something a collector probes: a named site or host and its address."""

    name: str
    address: str
    port: int = 862


class LossDirection(str, Enum):
    """Where a lost probe was lost, as far as the reflector's counters tell."""

    NONE = "none"  # the reply came back
    FORWARD = "forward"  # the reflector never saw the request
    REVERSE = "reverse"  # the reflector answered, the answer never arrived
    UNKNOWN = "unknown"  # lost, but no stateful reflector counter to tell which way


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One probe packet's fate. Times are in nanoseconds (integers: no float drift)."""

    target: str
    slice: str
    seq: int
    sent_ns: int  # wall-clock send time (CLOCK_REALTIME, ns)
    rtt_ns: int | None  # None when lost
    loss: LossDirection = LossDirection.NONE
    forward_owd_ns: int | None = None  # only when both clocks claim synchronisation
    reverse_owd_ns: int | None = None
    reflector_seq: int | None = None
    reflector_hop_limit: int | None = None  # hop limit the request arrived with
    reflector_dscp: int | None = None  # DSCP the request arrived with (Class of Service TLV)
    reply_hop_limit: int | None = None  # hop limit the reply arrived with
    reply_dscp: int | None = None  # DSCP the reply arrived with
    clock_error_ns: int | None = None  # sum of both ends' error estimates
    duplicate: bool = False
    icmp_error: str | None = None  # e.g. "port unreachable from 2001:db8::1": why it was lost

    @property
    def lost(self) -> bool:
        return self.rtt_ns is None
