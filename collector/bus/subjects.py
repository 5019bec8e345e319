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

Partitions (docs/architecture.md, "Replicas and partitions"): with P partitions the server
maps `xnet.KIND.SITE` to `xnet.KIND.N.SITE`, N = a hash of the site in 0..P-1
(`partition_mapping`), so a site keeps publishing on its own subjects (its permissions
cover them in every partition: the server checks the mapped subject), while partition N's
analyzers read `partition_filter(N)` only.
"""

from __future__ import annotations

import hashlib
import re

PREFIX = "xnet"
KINDS = ("windows", "observations", "health")
SITE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")  # one subject token, no wildcards
STREAM_SUBJECTS = tuple(f"{PREFIX}.{kind}.*" for kind in KINDS)
# One subject, not one per kind: nats-server 2.9 takes a consumer filter only within one of
# the stream's subjects, and a partition's filter spans the kinds. Who may publish there is
# still decided per site on the subjects before the mapping.
PARTITIONED_STREAM_SUBJECTS = (f"{PREFIX}.*.*.*",)
MAX_PARTITIONS = 1024


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


def site_subjects(site: str, partitioned: bool = False) -> tuple[str, ...]:
    """Every subject one site publishes on: its publish permission. nats-server checks it on
    the mapped subject, so a partitioned bus allows the site's subjects in any partition too
    (the site stays the last token: a site can misplace its own messages, not forge another's)."""
    own = tuple(subject(kind, site) for kind in KINDS)
    return own + tuple(f"{PREFIX}.{kind}.*.{site}" for kind in KINDS) if partitioned else own


def parse_subject(name: str) -> tuple[str, str]:
    """(kind, site) of a bus subject."""
    parts = name.split(".")
    if len(parts) == 4 and parts[2].isdigit():  # a partitioned stream's xnet.KIND.N.SITE
        del parts[2]
    if len(parts) != 3 or parts[0] != PREFIX or parts[1] not in KINDS or not SITE_PATTERN.fullmatch(parts[2]):
        raise BadSubject(f"{name!r} is not a bus subject (xnet.KIND.SITE or xnet.KIND.N.SITE)")
    return parts[1], parts[2]


def check_partitions(partitions: int) -> int:
    if not 1 <= partitions <= MAX_PARTITIONS:
        raise BadSubject(f"{partitions} partitions: from 1 to {MAX_PARTITIONS}")
    return partitions


def partition_mapping(partitions: int) -> dict[str, str]:
    """nats-server's `mappings` that put each site's messages in one of `partitions`."""
    check_partitions(partitions)
    return {f"{PREFIX}.*.*": f"{PREFIX}.{{{{wildcard(1)}}}}.{{{{partition({partitions},2)}}}}.{{{{wildcard(2)}}}}"}


def partition_filter(index: int) -> str:
    """The subjects partition `index` reads, every kind of each of its sites: a consumer filter."""
    return f"{PREFIX}.*.{index}.*"


def message_id(kind: str, site: str, body: bytes) -> str:
    return f"{site}:{kind}:{hashlib.sha256(body).hexdigest()[:32]}"
