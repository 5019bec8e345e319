"""STAMP test helpers: a request turned into its reply the way the reflector does it, and
whether a reflector on loopback answers."""

from __future__ import annotations

import socket
import time

from collector.wire.stamp import ErrorEstimate, SenderPacket, encode_sender, ns_to_ntp
from collector.wire.stamp_reflect import (
    ReceivedContext,
    ReflectorPolicy,
    SessionCounters,
    TlvStats,
    reflect_in_place,
    stamp_transmit_time,
)


def reflect_request(
    request: bytes,
    *,
    receive_ns: int,
    transmit_ns: int,
    error_estimate: int,
    hop_limit: int = 61,
    session: SessionCounters | None = None,
    authenticated: bool = False,
    key: bytes | None = None,
    context: ReceivedContext | None = None,
    policy: ReflectorPolicy = ReflectorPolicy(),
    stats: TlvStats | None = None,
) -> tuple[bytes, int]:
    """The reply to `request` (T2 = receive_ns, T3 = transmit_ns) and the DSCP it asked for."""
    buf = bytearray(request)
    dscp = reflect_in_place(
        buf,
        len(buf),
        receive_ns=receive_ns,
        error_estimate=error_estimate,
        hop_limit=hop_limit,
        session=session,
        authenticated=authenticated,
        key=key,
        context=context,
        policy=policy,
        stats=stats,
    )
    stamp_transmit_time(buf, len(buf), transmit_ns, session=session, authenticated=authenticated, key=key)
    return bytes(buf), dscp


def reflector_answers(port: int, key: bytes | None = None, host: str = "::1") -> bool:
    """Whether the reflector on [host]:port answers one STAMP request (authenticated with `key`)."""
    request = encode_sender(
        SenderPacket(1, ns_to_ntp(time.time_ns()), ErrorEstimate(), 7), key, authenticated=key is not None
    )
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        sock.settimeout(10)
        sock.sendto(request, (host, port))
        return len(sock.recv(2048)) == len(request)
