"""How a part connects to the bus: servers and the TLS files that are its identity.

The server maps a client certificate's subject to a user (`verify_and_map`), so one
certificate and key per site (or analyzer) is both its credentials and its encryption; the
CA file checks the server. Each site subscribes only under its own inbox prefix
(`inbox_prefix`), which its permissions allow, so no site reads another's acks.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

INBOX_PREFIX = "_XNET_INBOX"


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

    def tls_context(self) -> ssl.SSLContext | None:
        if self.ca_file is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_file))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert_file is not None:
            context.load_cert_chain(str(self.cert_file), str(self.key_file) if self.key_file else None)
        return context

    def connect_options(self) -> dict:
        """Keyword arguments of `nats.connect`: reconnect for ever, the client handles it."""
        options: dict = {
            "servers": list(self.servers),
            "name": f"xnetmon-{self.identity}",
            "inbox_prefix": inbox_prefix(self.identity),
            "connect_timeout": self.connect_timeout_s,
            "allow_reconnect": True,
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": 0.5,
        }
        context = self.tls_context()
        if context is not None:
            options["tls"] = context
        return options
