"""STAMP test helper: a request turned into its reply the way the reflector does it."""

from __future__ import annotations

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
        buf, len(buf), receive_ns=receive_ns, error_estimate=error_estimate, hop_limit=hop_limit,
        session=session, authenticated=authenticated, key=key, context=context, policy=policy, stats=stats,
    )
    stamp_transmit_time(buf, len(buf), transmit_ns, session=session, authenticated=authenticated, key=key)
    return bytes(buf), dscp
