"""How a part connects to the bus: servers and the TLS files that are its identity.

The server maps a client certificate's subject to a user (`verify_and_map`), so one
certificate and key per site (or analyzer) is both its credentials and its encryption; the
CA file checks the server. Each site subscribes only under its own inbox prefix
(`inbox_prefix`), which its permissions allow, so no site reads another's acks.
"""

from __future__ import annotations

import asyncio
import ssl
from asyncio import sslproto
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

INBOX_PREFIX = "_XNET_INBOX"
# A server that stops answering (frozen, or its host gone without a reset) is noticed only by
# pings: nats-py's default (2 min, 2 outstanding) takes up to 6 min, while the analyzer closes
# intervals as empty. Pinging every 3 s, a server silent for 3 pings (6-9 s) is left and the
# client reconnects (over TLS once the close has waited TLS_SHUTDOWN_TIMEOUT_S, below, for the
# frozen server's close_notify); at 2,800 sites that is ~930 pings/s at the server, nothing to it.
PING_INTERVAL_S = 3.0
MAX_OUTSTANDING_PINGS = 2
# Leaving a server over TLS closes the connection with a close_notify and waits for the
# server's; asyncio waits 30 s by default, and nats-py tries no other server meanwhile. A
# live server answers in milliseconds, a frozen one never: 2 s, then the socket is dropped.
TLS_SHUTDOWN_TIMEOUT_S = 2.0


def site_identity(site: str) -> str:
    """A site's identity on the bus: its certificate's name and its inbox prefix."""
    return f"site-{site}"


def operator_identity(name: str) -> str:
    """An operator's identity on the bus (`xnetmon bus add-operator`): may ask sites to probe."""
    return f"operator-{name}"


def inbox_prefix(identity: str) -> str:
    return f"{INBOX_PREFIX}.{identity}"


@dataclass(frozen=True, slots=True)
class BusEndpoint:
    """`servers`: nats:// or tls:// URLs. Without `ca_file` the connection is plain (a test
    or a loopback shape); with it, `cert_file` and `key_file` present the client's identity."""

    servers: tuple[str, ...]
    identity: str  # the site name, or the analyzer's name: its inbox prefix and client name
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    connect_timeout_s: float = 5.0
    ping_interval_s: float = PING_INTERVAL_S
    max_outstanding_pings: int = MAX_OUTSTANDING_PINGS

    def tls_context(self) -> ssl.SSLContext | None:
        if self.ca_file is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_file))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert_file is not None:
            context.load_cert_chain(str(self.cert_file), str(self.key_file) if self.key_file else None)
        return context

    def connect_options(self) -> dict:
        """Keyword arguments of `nats.connect`: reconnect for ever, the client handles it,
        and leave a server that no longer answers pings."""
        options: dict = {
            "servers": list(self.servers),
            "name": f"xnetmon-{self.identity}",
            "inbox_prefix": inbox_prefix(self.identity),
            "connect_timeout": self.connect_timeout_s,
            "allow_reconnect": True,
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": 0.5,
            "ping_interval": self.ping_interval_s,
            "max_outstanding_pings": self.max_outstanding_pings,
        }
        context = self.tls_context()
        if context is not None:
            options["tls"] = context
        return options


class BusEventLoop(asyncio.SelectorEventLoop):
    """The event loop bus clients run in, where a frozen server costs seconds over TLS.

    nats-py upgrades its socket with `loop.start_tls` after the server's INFO and bounds the
    handshake itself (`connect_timeout`), but not the close: TLS connections here close within
    TLS_SHUTDOWN_TIMEOUT_S. And a handshake given up (timed out, cancelled) closes the socket
    under the TLS protocol asyncio put in its place, so nats-py's stream writer, which waits
    for that close before the next server is tried, would wait for ever: the socket gets its
    first protocol back before the close reaches it."""

    async def start_tls(
        self,
        transport: asyncio.BaseTransport,
        protocol: asyncio.BaseProtocol,
        sslcontext: ssl.SSLContext,
        *,
        server_side: bool = False,
        server_hostname: str | None = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
    ) -> asyncio.Transport | None:
        plain = transport.get_protocol()
        try:
            upgraded = await super().start_tls(
                transport,
                protocol,
                sslcontext,
                server_side=server_side,
                server_hostname=server_hostname,
                ssl_handshake_timeout=ssl_handshake_timeout,
                ssl_shutdown_timeout=TLS_SHUTDOWN_TIMEOUT_S if ssl_shutdown_timeout is None else ssl_shutdown_timeout,
            )
        except BaseException:
            # asyncio has closed the socket; its connection_lost, still to come, goes to `plain`
            _release_read_buffer(transport.get_protocol())
            transport.set_protocol(plain)
            raise
        if isinstance(protocol, asyncio.StreamReaderProtocol):
            # What StreamWriter.start_tls does, which nats-py does not call: the stream now runs
            # over TLS, where asking to keep a half-closed connection open (its eof_received's
            # answer for plain sockets) has no effect, and asyncio logs a warning each time the
            # server closes one if the protocol still asks.
            protocol._over_ssl = True  # type: ignore[attr-defined]
        return upgraded


def _release_read_buffer(given_up: asyncio.BaseProtocol) -> None:
    """A TLS protocol whose handshake was given up never reads again, but it sits in reference
    cycles with its transport and waiter until a full collection, holding its 256 KiB read
    buffer: a client retrying a frozen server every few seconds piles them up (the analyzer
    collects its old generation rarely, `analyzer/gc_tuning.py`). The buffer goes now."""
    if isinstance(given_up, sslproto.SSLProtocol):
        given_up._ssl_buffer = bytearray()  # type: ignore[attr-defined]
        given_up._ssl_buffer_view = memoryview(given_up._ssl_buffer)  # type: ignore[attr-defined]


def bus_event_loop() -> asyncio.AbstractEventLoop:
    """A new loop for a thread that holds bus connections (`asyncio.Runner(loop_factory=...)`
    takes it too)."""
    return BusEventLoop()


def run_on_bus_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` on a `BusEventLoop`, for a short-lived script or command that connects
    to the bus and is done."""
    with asyncio.Runner(loop_factory=bus_event_loop) as runner:
        return runner.run(coroutine)
