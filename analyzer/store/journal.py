"""The HTTP intake's journal: every shipment the API takes is on disk before its 200, so an
analyzer killed between two snapshots loses nothing it acknowledged (the agent has deleted
those windows from its spool once it got the 200).

Order of a POST: parse, ingest into the store, `record` the body (appended and fsync'd),
answer 200. Writes are fsync'd in groups: one fsync covers every body written before it,
so concurrent POSTs share the flush. A failed write answers 503; the agent sends the body
again and it is recorded then (the store takes it as a duplicate).

Snapshots truncate it: before the store's state is taken, `rotate()` starts a new segment;
once the snapshot is on disk, `drop_through()` deletes the segments before it. A body whose
ingest came before the state was taken was recorded before it too, or lands in the new
segment: either way a restart restores the snapshot and then replays the segments left,
and the store's (path key, seq) dedup drops what the snapshot already held.

Layout of the directory: segments `00000000000000000007.journal`, each a run of records
`>II` (body length, CRC-32 of the body) then the body. A record cut short by a crash ends
its segment's replay; a record whose CRC does not match is skipped and counted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

from analyzer.store.memory import WindowStore
from collector.contract.codec import MalformedShipment, ShipmentParser
from collector.system.files import fsync_directory

log = logging.getLogger(__name__)

SUFFIX = ".journal"
HEADER = struct.Struct(">II")
MAX_RECORD_BYTES = 64 << 20  # above the API's body limit: a longer length is damage


class IntakeJournal:
    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.damaged_total = 0  # records skipped on replay
        self._write_lock = threading.Lock()  # the file and the count of records written
        self._sync_lock = threading.Lock()  # one fsync at a time
        self._written = 0
        self._synced = 0
        existing = self._segments()
        self._left = existing  # by a previous run: to replay
        self._segment_id = (int(existing[-1].stem) + 1) if existing else 0
        self._fd = self._open(self._segment_id)

    def _segments(self) -> list[Path]:
        return sorted((p for p in self.directory.glob(f"*{SUFFIX}") if p.stem.isdigit()), key=lambda p: int(p.stem))

    def _open(self, segment_id: int) -> int:
        fd = os.open(self.directory / f"{segment_id:020d}{SUFFIX}", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fsync_directory(self.directory)
        return fd

    # -- the API's side ------------------------------------------------------------------

    def record(self, body: bytes) -> None:
        """Append `body` and return once it is on disk. Raises OSError (a full disk)."""
        record = HEADER.pack(len(body), zlib.crc32(body)) + body
        with self._write_lock:
            view = memoryview(record)
            while view:
                view = view[os.write(self._fd, view) :]
            self._written += 1
            ticket = self._written
        with self._sync_lock:
            if self._synced >= ticket:
                return  # another writer's fsync covered this record
            with self._write_lock:
                upto, fd = self._written, self._fd
            os.fsync(fd)
            self._synced = upto

    # -- snapshots -----------------------------------------------------------------------

    def rotate(self) -> int:
        """Start a new segment; returns the id of the last one before it, which a snapshot
        whose state is taken after this call covers (see `drop_through`)."""
        with self._sync_lock, self._write_lock:
            os.fsync(self._fd)
            self._synced = self._written
            os.close(self._fd)
            covered = self._segment_id
            self._segment_id += 1
            self._fd = self._open(self._segment_id)
        return covered

    def drop_through(self, segment_id: int) -> None:
        """Delete the segments up to `segment_id`: a snapshot on disk holds what they held."""
        for segment in self._segments():
            if int(segment.stem) <= segment_id:
                with contextlib.suppress(FileNotFoundError):
                    segment.unlink()
        self._left = [p for p in self._left if int(p.stem) > segment_id]

    # -- restart -------------------------------------------------------------------------

    def left_bodies(self) -> Iterator[bytes]:
        """The bodies a previous run recorded and no snapshot yet covers, oldest first."""
        for segment in self._left:
            try:
                data = segment.read_bytes()
            except OSError as exc:
                log.error("intake journal: cannot read %s: %s", segment, exc)
                self.damaged_total += 1
                continue
            yield from self._records(data, segment)

    def _records(self, data: bytes, segment: Path) -> Iterator[bytes]:
        offset = 0
        while offset + HEADER.size <= len(data):
            length, crc = HEADER.unpack_from(data, offset)
            body = data[offset + HEADER.size : offset + HEADER.size + length]
            if length > MAX_RECORD_BYTES or len(body) < length:
                break  # cut short by a crash mid-write, or a damaged length: nothing after it is framed
            offset += HEADER.size + length
            if zlib.crc32(body) != crc:
                self.damaged_total += 1
                log.error("intake journal: a damaged record in %s; skipped", segment.name)
                continue
            yield body
        if offset < len(data):
            log.warning("intake journal: %s ends in a record cut short (a crash mid-write)", segment.name)

    def close(self) -> None:
        with self._sync_lock, self._write_lock:
            with contextlib.suppress(OSError):
                os.fsync(self._fd)
            os.close(self._fd)


def replay(journal: IntakeJournal, store: WindowStore, now_ns: int) -> int:
    """Ingest the bodies a previous run left in `journal` into `store` (restored from the
    latest snapshot); returns the windows the store took anew."""
    parser, accepted = ShipmentParser(), 0
    for body in journal.left_bodies():
        try:
            batch = parser.parse(body)
        except MalformedShipment as exc:  # written by this code, so only damage explains it
            journal.damaged_total += 1
            log.error("intake journal: a record that is not a shipment (%s); skipped", exc)
            continue
        accepted += store.ingest(batch, now_ns).accepted
    if accepted:
        log.info("intake journal: %d window(s) taken after the last snapshot replayed", accepted)
    return accepted
