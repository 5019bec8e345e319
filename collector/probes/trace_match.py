"""Which trace probe an answer is about, and what it says: socket-free, so crafted replies test it.

Answers arrive three ways. For UDP probes the kernel matches ICMPv6 errors to our socket
by the quoted ports and hands over the quoted payload (IPV6_RECVERR), which carries the
probe's sequence number. For ICMPv6 echo and TCP SYN probes a raw ICMPv6 socket sees
every error and echo reply of the host, and a raw TCP socket every segment: the quoted or
returned identifier/ports pick the flow, the echo sequence or TCP sequence the probe.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from collector.contract.records import FlowId, HopAnswer
from collector.probes.trace_session import Answer
from collector.system.measurement_sockets import IcmpError
from collector.wire import icmp6, trace6

_PORT_UNREACHABLE = (icmp6.DESTINATION_UNREACHABLE, 4)


@dataclass(frozen=True)
class FlowSet:
    """The flows of one run towards one target, as a transport needs them to match answers."""

    target: str  # the address probed
    flows: tuple[FlowId, ...]
    tcp_base: int = 0  # TCP sequence number of wire seq 0 (random per run)

    def __post_init__(self) -> None:
        # Kernel-reported addresses are in compressed form; compare like with like.
        object.__setattr__(self, "target", ipaddress.IPv6Address(self.target.split("%")[0]).compressed)
        object.__setattr__(self, "_by_port", {f.source_port: i for i, f in enumerate(self.flows)})

    def flow_of(self, source_port: int, destination_port: int | None = None) -> int | None:
        index = self._by_port.get(source_port)  # type: ignore[attr-defined]
        if index is None:
            return None
        if destination_port is not None and self.flows[index].destination_port != destination_port:
            return None
        return index


def classify(icmp_type: int, code: int) -> tuple[HopAnswer, str | None]:
    """What an ICMPv6 error about a probe means for the trace."""
    if icmp_type == icmp6.TIME_EXCEEDED:
        return HopAnswer.TIME_EXCEEDED, None
    if (icmp_type, code) == _PORT_UNREACHABLE:
        return HopAnswer.REACHED, None  # the target's own stack refused the port: we got there
    return HopAnswer.UNREACHABLE, icmp6.error_name(icmp_type, code)


def match_udp_error(error: IcmpError, flow: int, receive_ns: int) -> Answer | None:
    """An error from the error queue of flow `flow`'s UDP socket."""
    seq = trace6.udp_seq(error.payload)
    if seq is None or error.offender is None:
        return None
    answer, detail = classify(error.icmp_type, error.icmp_code)
    return Answer(flow, seq, error.offender, error.kernel_ns or receive_ns, answer, detail)


def match_icmp6(data: bytes, responder: str, receive_ns: int, flows: FlowSet, protocol: str) -> Answer | None:
    """A message from the raw ICMPv6 socket: an echo reply to an echo probe, or an error
    quoting one of our echo or TCP probes. None when it is about someone else."""
    if not data:
        return None
    if data[0] == icmp6.ECHO_REPLY:
        if protocol != "icmp":
            return None
        try:
            echo = icmp6.decode_echo(data)
        except icmp6.Icmp6DecodeError:
            return None
        flow = flows.flow_of(echo.identifier)
        if flow is None or responder != flows.target:
            return None
        return Answer(flow, echo.sequence, responder, receive_ns, HopAnswer.REACHED)
    if data[0] not in icmp6.ERROR_TYPES or len(data) < icmp6.ERROR_HEADER_LEN:
        return None
    quote = trace6.parse_quote(data[icmp6.ERROR_HEADER_LEN :])
    if quote is None or quote.destination != flows.target:
        return None
    found = _quoted_probe(quote, flows, protocol)
    if found is None:
        return None
    flow, seq = found
    answer, detail = classify(data[0], data[1])
    return Answer(flow, seq, responder, receive_ns, answer, detail, quote.dscp)


def _quoted_probe(quote: trace6.QuotedPacket, flows: FlowSet, protocol: str) -> tuple[int, int] | None:
    """(flow, wire seq) of the probe a quote shows."""
    transport = quote.transport
    if protocol == "icmp" and quote.next_header == trace6.PROTO_ICMP6:
        if len(transport) < icmp6.HEADER_LEN or transport[0] != icmp6.ECHO_REQUEST:
            return None
        _type, _code, _sum, identifier, seq = icmp6.HEADER.unpack_from(transport)
        flow = flows.flow_of(identifier)
        return None if flow is None else (flow, seq)
    if protocol == "tcp" and quote.next_header == trace6.PROTO_TCP:
        ports = trace6.quoted_ports(transport)
        tcp_seq = trace6.quoted_tcp_seq(transport)
        if ports is None or tcp_seq is None:
            return None
        flow = flows.flow_of(*ports)
        seq = (tcp_seq - flows.tcp_base) & 0xFFFFFFFF
        return None if flow is None or seq > 0xFFFF else (flow, seq)
    return None


def match_tcp(data: bytes, responder: str, receive_ns: int, flows: FlowSet) -> Answer | None:
    """A segment from the raw TCP socket: the target's SYN-ACK (port open) or RST (closed)
    to one of our SYNs; both acknowledge our sequence number + 1."""
    segment = trace6.parse_tcp(data)
    if segment is None or responder != flows.target or not segment.flags & trace6.TCP_ACK:
        return None
    if not segment.flags & (trace6.TCP_SYN | trace6.TCP_RST):
        return None
    flow = flows.flow_of(segment.destination_port, segment.source_port)
    seq = (segment.ack - 1 - flows.tcp_base) & 0xFFFFFFFF
    if flow is None or seq > 0xFFFF:
        return None
    detail = "port open" if segment.flags & trace6.TCP_SYN else "port closed"
    return Answer(flow, seq, responder, receive_ns, HopAnswer.REACHED, detail)
