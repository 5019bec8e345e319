"""The one JetStream stream every site publishes into and every analyzer reads.

Limits (`StreamLimits`, defaults sized for the national extranet):
- file storage, so a server restart loses nothing acknowledged;
- `max_age` 24 h: analyzers may be away for a day and still catch up from their consumer;
- `max_bytes` 10 GiB: 24 h of ~60 sites' windows at 10 s (the lab, a region); past it the
  oldest messages go (discard old), as the agents' spools do. A bigger extranet sizes the
  stream with `StreamLimits.for_sites`: a byte budget per site and hour
  (`site_bytes_per_hour`) times its sites and the hours it keeps, so that the byte limit
  holds what the age limit promises (2,800 sites x 24 paths: 24 h at 10 s windows ~480 GB,
  1 h at 1 s windows ~200 GB, per server holding a replica);
- `duplicate_window` 10 min: an agent re-sends after a lost ack as soon as the bus answers
  again; a later repeat is caught by the analyzer's dedup by (path key, seq);
- `max_msg_size` 8 MiB: a body of 5,000 windows is ~3 MiB;
- `replicas`: 3 on a cluster (`replicas_for`), so a server down loses nothing and stops nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from collector.bus.subjects import PARTITIONED_STREAM_SUBJECTS, STREAM_SUBJECTS

STREAM_NAME = "XNET"
CLUSTER_REPLICAS = 3  # a quorum of 2 survives one server down


def replicas_for(servers: int) -> int:
    """The stream's replicas on a bus reached by `servers` URLs: a cluster is given by all
    its nodes (xnetmon bus init --node), so three or more URLs mean R3, fewer one server."""
    return CLUSTER_REPLICAS if servers >= CLUSTER_REPLICAS else 1


# A window in the codec's JSON: 18,150 B for a site's body of 24 (bench/bus_national.py);
# health, observations, headers and the store's framing add about a tenth.
WINDOW_BYTES = 756
OVERHEAD = 1.1
PATHS_PER_SITE = 24  # 4 slices x ~6 targets: the national sizing (docs/architecture.md)


def site_bytes_per_hour(window_s: float, paths: int = PATHS_PER_SITE) -> int:
    """The stream bytes one site's agent adds in an hour with windows of `window_s`."""
    return math.ceil(paths * WINDOW_BYTES * OVERHEAD * 3600.0 / window_s)


@dataclass(frozen=True, slots=True)
class StreamLimits:
    max_age_s: float = 24 * 3600.0
    max_bytes: int = 10 << 30
    duplicate_window_s: float = 600.0
    max_msg_size: int = 8 << 20
    replicas: int = 1

    @classmethod
    def for_sites(
        cls, sites: int, hours: float = 24.0, window_s: float = 10.0, paths: int = PATHS_PER_SITE, replicas: int = 1
    ) -> StreamLimits:
        """Limits whose age and bytes agree: `hours` of `sites` sites' windows either way."""
        if sites < 1 or not hours > 0 or not window_s > 0:
            raise ValueError(f"stream sized for {sites} sites, {hours} h, {window_s} s windows: all must be positive")
        return cls(
            max_age_s=hours * 3600.0,
            max_bytes=math.ceil(sites * site_bytes_per_hour(window_s, paths) * hours),
            replicas=replicas,
        )


def reader_subjects(durable: str = "*") -> tuple[str, ...]:
    """What a reader of the stream publishes, and no more (an analyzer's permission): the
    stream made when missing (an existing one is never changed by a create) and its info, its
    durable consumer made anew, looked up and deleted (`durable`: one name, or `*` for any of
    the stream's), pulls and acks. Not: delete, purge or update the stream, or publish into it."""
    api = "$JS.API"
    return (
        f"{api}.STREAM.CREATE.{STREAM_NAME}",
        f"{api}.STREAM.INFO.{STREAM_NAME}",
        f"{api}.CONSUMER.CREATE.{STREAM_NAME}.{durable}.>",  # the name, then the filter subject
        *(f"{api}.CONSUMER.{verb}.{STREAM_NAME}.{durable}" for verb in ("INFO", "DELETE", "MSG.NEXT")),
        f"$JS.ACK.{STREAM_NAME}.{durable}.>",
    )


def stream_config(limits: StreamLimits = StreamLimits(), *, partitioned: bool = False) -> StreamConfig:
    """`partitioned`: the server maps sites' subjects into partitions (`partition_mapping`)."""
    return StreamConfig(
        name=STREAM_NAME,
        subjects=list(PARTITIONED_STREAM_SUBJECTS if partitioned else STREAM_SUBJECTS),
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_age=limits.max_age_s,
        max_bytes=limits.max_bytes,
        max_msg_size=limits.max_msg_size,
        duplicate_window=limits.duplicate_window_s,
        num_replicas=limits.replicas,
    )
