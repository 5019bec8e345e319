"""An analyzer replica's state kept on the bus: the store's snapshot (the format of
`analyzer.store.snapshot`) with the stream sequence it covers, as one object per replica in
the JetStream object store `CHECKPOINT_BUCKET`.

An object store, not a key-value bucket: a KV value must fit in one message (nats-server's
`max_payload`, 1 MiB by default) and a national analyzer's snapshot is tens of MB; the object
store chunks it. The sequence travels in the object's own metadata (header
`CHECKPOINT_SEQ_HEADER`), written in the same put as the snapshot, so the two never disagree.

What "covers" means: every message up to `seq` is in the snapshot's state; some after it may
be too (the sequence is read before the state is taken). Replaying from `seq + 1` is then
exact, as the store drops windows it holds already by (path key, seq).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from nats.js.api import ObjectMeta, ObjectStoreConfig, StorageType
from nats.js.errors import BadRequestError, BucketNotFoundError, ObjectNotFoundError

CHECKPOINT_BUCKET = "XNET_ANALYZERS"
CHECKPOINT_SEQ_HEADER = "Xnet-Stream-Seq"
# Publish subjects an analyzer needs for its checkpoints, and no more: the bucket's stream
# made, looked up and its old chunks purged on a put, the chunks and metadata of its objects,
# the last metadata read and the ordered consumer (with its flow control replies) that reads
# an object back.
_BUCKET_STREAM = f"OBJ_{CHECKPOINT_BUCKET}"


def checkpoint_subjects(objects: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """What a replica publishes for its checkpoints: the bucket's stream (made, read, purged
    of an object's old chunks), its ordered consumer and, of the objects, every one or only
    the metadata of `objects` (chunks are named by a random id: any chunk, but an object is
    its metadata)."""
    if objects is None:
        writes: tuple[str, ...] = (f"$O.{CHECKPOINT_BUCKET}.>",)
    else:
        metadata = (base64.urlsafe_b64encode(name.encode()).decode() for name in objects)
        writes = (f"$O.{CHECKPOINT_BUCKET}.C.>", *(f"$O.{CHECKPOINT_BUCKET}.M.{m}" for m in metadata))
    return (
        *(f"$JS.API.STREAM.{verb}.{_BUCKET_STREAM}" for verb in ("CREATE", "INFO", "MSG.GET", "PURGE")),
        "$JS.API.STREAM.NAMES",  # the ordered consumer finds its stream by subject
        f"$JS.API.CONSUMER.CREATE.{_BUCKET_STREAM}",
        f"$JS.API.CONSUMER.CREATE.{_BUCKET_STREAM}.>",
        *writes,
        f"$JS.FC.{_BUCKET_STREAM}.>",
    )


CHECKPOINT_SUBJECTS = checkpoint_subjects()  # the shared analyzer identity's: every object


@dataclass(frozen=True, slots=True)
class Checkpoint:
    seq: int  # the stream sequence the snapshot covers (0: none yet)
    snapshot: str  # analyzer.store.snapshot's text


async def checkpoint_store(js, replicas: int = 1):
    """The bucket, created (file storage, `replicas` as the stream's) the first time an analyzer asks for it."""
    try:
        return await js.object_store(CHECKPOINT_BUCKET)
    except BucketNotFoundError:
        pass
    try:
        return await js.create_object_store(
            CHECKPOINT_BUCKET,
            ObjectStoreConfig(
                description="xnetmon analyzer replicas' checkpoints", storage=StorageType.FILE, replicas=replicas
            ),
        )
    except BadRequestError:  # another analyzer made it meanwhile (analyzers start together): use that one
        return await js.object_store(CHECKPOINT_BUCKET)


async def load_checkpoint(objects, replica: str) -> Checkpoint | None:
    """`replica`'s last checkpoint, None when it has none. Raises ValueError when the object
    is there but its sequence cannot be read."""
    try:
        result = await objects.get(replica)
    except ObjectNotFoundError:
        return None
    headers = result.info.headers or {}
    raw = headers.get(CHECKPOINT_SEQ_HEADER)
    value = raw[0] if isinstance(raw, list) and raw else raw
    try:
        seq = int(str(value))
    except ValueError:
        raise ValueError(f"checkpoint {CHECKPOINT_BUCKET}/{replica}: no stream sequence ({raw!r})") from None
    if seq < 0:
        raise ValueError(f"checkpoint {CHECKPOINT_BUCKET}/{replica}: stream sequence {seq}")
    return Checkpoint(seq, result.data.decode())


async def save_checkpoint(objects, replica: str, checkpoint: Checkpoint) -> int:
    """Replace `replica`'s checkpoint; returns the snapshot's bytes."""
    data = checkpoint.snapshot.encode()
    meta = ObjectMeta(name=replica, headers={CHECKPOINT_SEQ_HEADER: [str(checkpoint.seq)]})
    await objects.put(replica, data, meta=meta)
    return len(data)
