"""Subjects and message ids on the bus.

Every subject carries the site that published it, as its last token, so that the server's
per-site permissions decide who may publish what: `xnet.windows.SITE`,
`xnet.observations.SITE`, `xnet.health.SITE`. A message's body is a shipment body of the
contract (`collector.contract.codec`) holding only what its subject names.

The message id (JetStream's `Nats-Msg-Id`, deduplicated by the stream within its duplicate
window) names the site, the kind and the body's SHA-256: an agent re-sends a spooled body
byte for byte after a lost ack, so the same id comes back and the stream stores it once.
Windows re-encoded after the spool's bound cut into a record get another id; the analyzer's
own dedup by (path key, seq) catches those.
"""

from __future__ import annotations

import hashlib
import re

PREFIX = "xnet"
KINDS = ("windows", "observations", "health")
SITE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")  # one subject token, no wildcards
STREAM_SUBJECTS = tuple(f"{PREFIX}.{kind}.*" for kind in KINDS)


class BadSubject(ValueError):
    """A subject or site name outside the bus's scheme."""


def check_site(site: str) -> str:
    if not SITE_PATTERN.fullmatch(site):
        raise BadSubject(
            f"site name {site!r} cannot be a bus subject token: use letters, digits, '-' and '_' (at most 64)"
        )
    return site


def subject(kind: str, site: str) -> str:
    if kind not in KINDS:
        raise BadSubject(f"unknown message kind {kind!r}; one of {', '.join(KINDS)}")
    return f"{PREFIX}.{kind}.{check_site(site)}"


def site_subjects(site: str) -> tuple[str, ...]:
    """Every subject one site publishes on: its publish permission."""
    return tuple(subject(kind, site) for kind in KINDS)


def parse_subject(name: str) -> tuple[str, str]:
    """(kind, site) of a bus subject."""
    parts = name.split(".")
    if len(parts) != 3 or parts[0] != PREFIX or parts[1] not in KINDS or not SITE_PATTERN.fullmatch(parts[2]):
        raise BadSubject(f"{name!r} is not a bus subject (xnet.KIND.SITE)")
    return parts[1], parts[2]


def message_id(kind: str, site: str, body: bytes) -> str:
    return f"{site}:{kind}:{hashlib.sha256(body).hexdigest()[:32]}"
