"""WindowSpool: order, the bound, restarts, damaged lines, ownership of the directory."""

from __future__ import annotations

import errno
import json
import os

import pytest

from collector.outputs.spool import CURSOR_NAME, SpoolError, SyncFailed, WindowSpool
from tests.support import failing_fsync, fill_filesystem, small_filesystem


def add(spool: WindowSpool, *seqs: int) -> int:
    """Spool a body holding windows with these seqs; returns the windows the bound dropped."""
    body = {"site": "cnty1a", "windows": [{"seq": s} for s in seqs], "observations": [], "health": None}
    return spool.append(json.dumps(body).encode(), len(seqs))


def drain(spool: WindowSpool) -> list[int]:
    """Every window seq left, oldest first, popping as a delivering sink would."""
    seqs = []
    while (head := spool.head()) is not None:
        windows = json.loads(head)["windows"]
        assert len(windows) == spool.head_windows
        seqs += [w["seq"] for w in windows]
        spool.pop_head()
    return seqs


def segments(directory) -> list[str]:
    return sorted(p.name for p in directory.glob("*.jsonl"))


@pytest.fixture
def open_spool(tmp_path):
    """Opens spools on tmp_path (as a restarted agent would) and closes them all at the end."""
    opened: list[WindowSpool] = []

    def open_(max_windows: int = 100, **options) -> WindowSpool:
        opened.append(WindowSpool(tmp_path, max_windows, **options))
        return opened[-1]

    yield open_
    for spool in opened:
        spool.close()


def test_first_in_first_out(open_spool):
    spool = open_spool(100)
    add(spool, 1, 2)
    add(spool, 3)
    assert (len(spool), spool.pending_windows) == (2, 3)
    assert [w["seq"] for w in json.loads(spool.head())["windows"]] == [1, 2]
    assert drain(spool) == [1, 2, 3]
    assert (len(spool), spool.pending_windows) == (0, 0)


def test_a_reopened_spool_resumes_where_delivery_stopped(open_spool):
    spool = open_spool(100)
    for seq in range(5):
        add(spool, seq)
    spool.pop_head()
    spool.pop_head()
    spool.close()

    again = open_spool(100)
    assert again.pending_windows == 3
    add(again, 5)
    assert drain(again) == [2, 3, 4, 5]


def test_the_bound_drops_the_oldest_windows_one_by_one(open_spool):
    spool = open_spool(4)
    assert add(spool, 0, 1, 2) == 0
    assert add(spool, 3, 4, 5) == 2  # the oldest record keeps only its newest window
    assert (spool.pending_windows, spool.dropped_windows_total) == (4, 2)
    assert json.loads(spool.head())["windows"] == [{"seq": 2}]
    spool.close()

    again = open_spool(4)  # the partial drop survives a restart
    assert drain(again) == [2, 3, 4, 5]


def test_the_bound_also_limits_batches_without_windows(open_spool):
    spool = open_spool(3)
    for _ in range(5):
        add(spool)  # health or observations only
    assert len(spool) == 3 and spool.dropped_windows_total == 0


def add_blocks(spool: WindowSpool, tag: int, blocks: int = 3) -> None:
    """Spool a body of in-situ blocks alone, as the agent ships ended blocks between windows."""
    body = {"site": "cnty1a", "windows": [], "marked_blocks": [{"tag": tag, "n": i} for i in range(blocks)]}
    spool.append(json.dumps(body).encode(), 0, blocks=blocks, kind="health")


def drain_bodies(spool: WindowSpool) -> list[tuple[str, object]]:
    """("w", seqs) or ("b", tag) per body left, oldest first, popping as a sink would."""
    found: list[tuple[str, object]] = []
    while (head := spool.head()) is not None:
        data = json.loads(head)
        found.append(
            ("w", [w["seq"] for w in data["windows"]]) if data["windows"] else ("b", data["marked_blocks"][0]["tag"])
        )
        spool.pop_head()
    return found


def test_records_of_blocks_alone_have_a_byte_bound_of_their_own_and_their_drops_are_counted(open_spool, tmp_path):
    """Shipments of blocks alone used to be bounded only as records (max_windows of them,
    whatever their size) and their blocks went uncounted; now the oldest go past their byte
    bound, windows stay, and every block dropped is counted."""
    probe = open_spool(100)
    add_blocks(probe, 0)
    size = probe.blocks_only_bytes + 10  # one record's line, and room for longer ids and tags
    probe.close()
    for path in tmp_path.glob("*.jsonl"):
        path.unlink()
    (tmp_path / CURSOR_NAME).unlink(missing_ok=True)

    spool = open_spool(100, max_blocks_only_bytes=2 * size, segment_bytes=1)  # a segment a record
    add(spool, 1)
    add_blocks(spool, 10)
    add_blocks(spool, 11)
    add(spool, 2)
    add_blocks(spool, 12)  # three of blocks alone: one too many, the oldest goes
    add_blocks(spool, 13)
    assert spool.dropped_blocks_total == 6 and spool.dropped_windows_total == 0
    assert spool.blocks_only_bytes <= 2 * size and spool.pending_windows == 2
    assert len(segments(tmp_path)) == 4  # the segments of the records that went, gone at once
    spool.close()
    again = open_spool(100, max_blocks_only_bytes=2 * size, segment_bytes=1)
    assert drain_bodies(again) == [("w", [1]), ("w", [2]), ("b", 12), ("b", 13)]
    assert segments(tmp_path) == []  # no segment left behind by the records that went


def test_records_of_blocks_alone_dropped_behind_a_window_stay_dropped_after_a_restart(open_spool, tmp_path):
    """Records of blocks alone dropped from the middle of the queue share their segment with
    records that stay: a restart used to take them back from it, and the bound dropped (and
    counted) them again, or a larger bound delivered blocks already counted as dropped."""
    probe = open_spool(100)
    add_blocks(probe, 0)
    size = probe.blocks_only_bytes + 10
    probe.close()
    for path in tmp_path.glob("*.jsonl"):
        path.unlink()
    (tmp_path / CURSOR_NAME).unlink(missing_ok=True)

    spool = open_spool(100, max_blocks_only_bytes=3 * size)  # the default segment: one for all
    add(spool, 1)
    for tag in range(10, 13):
        add_blocks(spool, tag)
    add(spool, 2)
    for tag in range(13, 16):
        add_blocks(spool, tag)
    assert (spool.dropped_blocks_total, len(spool), len(segments(tmp_path))) == (9, 5, 1)
    spool.close()

    again = open_spool(100, max_blocks_only_bytes=3 * size)
    assert (again.dropped_blocks_total, len(again)) == (0, 5)
    again.close()
    larger = open_spool(100, max_blocks_only_bytes=100 * size)
    assert drain_bodies(larger) == [("w", [1]), ("w", [2]), ("b", 13), ("b", 14), ("b", 15)]


def test_a_cursor_of_an_older_spool_without_dropped_records_is_read(open_spool, tmp_path):
    spool = open_spool(100)
    for seq in range(3):
        add(spool, seq)
    spool.close()
    (tmp_path / CURSOR_NAME).write_text('{"next_id": 1, "skip_windows": 0}')
    assert drain(open_spool(100)) == [1, 2]


def test_blocks_of_a_record_the_window_bound_drops_are_counted(open_spool):
    spool = open_spool(2)
    body = {"site": "cnty1a", "windows": [{"seq": 0}], "marked_blocks": [{}, {}]}
    spool.append(json.dumps(body).encode(), 1, blocks=2, kind="windows")
    add(spool, 1, 2)  # three windows: the first record goes, with its blocks
    assert (spool.dropped_windows_total, spool.dropped_blocks_total) == (1, 2)
    assert drain_bodies(spool) == [("w", [1, 2])]
    for tag in range(3):  # the record bound (max_windows records) drops blocks alone too
        add_blocks(spool, tag)
    assert spool.dropped_blocks_total == 5 and drain_bodies(spool) == [("b", 1), ("b", 2)]


def test_a_record_keeps_its_kind_and_an_older_spools_lines_read_as_kind_unknown(open_spool, tmp_path):
    spool = open_spool(100)
    add_blocks(spool, 1)
    assert spool.head_kind == "health"
    spool.close()
    body = b'{"site":"cnty1a","windows":[{"seq":5}]}'
    old_line = b'{"id":1,"windows":1,"crc32":%d,"batch":%s}\n' % (__import__("zlib").crc32(body), body)
    with open(sorted(tmp_path.glob("*.jsonl"))[-1], "ab") as f:
        f.write(old_line)  # as an agent before kinds wrote it
    again = open_spool(100)
    assert again.head_kind == "health"
    again.pop_head()
    assert (again.head(), again.head_kind, again.head_windows) == (body, "", 1)
    with pytest.raises(ValueError, match="kind"):
        again.append(b"{}", 0, kind='bad"kind')


def test_a_smaller_bound_after_a_restart_applies_at_once(open_spool):
    spool = open_spool(100)
    for seq in range(6):
        add(spool, seq)
    spool.close()
    again = open_spool(2)
    assert again.dropped_windows_total == 4
    assert drain(again) == [4, 5]


def test_segments_roll_and_go_once_delivered(open_spool, tmp_path):
    spool = open_spool(100, segment_bytes=150)
    for seq in range(6):
        add(spool, seq)
    assert len(segments(tmp_path)) >= 3
    assert drain(spool) == list(range(6))
    assert segments(tmp_path) == []
    add(spool, 6)  # a fresh segment after everything went
    assert drain(spool) == [6]


def test_appends_are_flushed_later_every_segment_written_once_even_when_rolled_over(open_spool, tmp_path, monkeypatch):
    """append writes and does not fsync; unsynced() hands over one descriptor per segment
    written since the last call (rolled-over ones too) and the directory for their new
    names; flush() fsyncs and closes them."""
    flushed: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (flushed.append(fd), real_fsync(fd))[1])
    spool = open_spool(100, segment_bytes=1)  # a segment a record
    for seq in range(3):
        add(spool, seq)
    assert flushed == []  # written, not yet flushed
    assert len(segments(tmp_path)) == 3
    pending = spool.unsynced()
    assert (len(pending.descriptors), pending.directory) == (3, tmp_path)
    pending.flush()
    assert flushed[:3] == list(pending.descriptors) and len(flushed) == 4  # and the directory
    for fd in pending.descriptors:
        with pytest.raises(OSError):
            os.fstat(fd)  # closed by flush
    assert spool.unsynced().descriptors == ()  # nothing written since
    add(spool, 3)
    pending = spool.unsynced()
    pending.flush()
    assert len(pending.descriptors) == 1 and drain(spool) == [0, 1, 2, 3]


def test_a_failed_fsync_keeps_its_descriptor_for_the_next_flush_one_per_file(open_spool, tmp_path, monkeypatch):
    """flush() used to close every descriptor whatever its fsync said: a failed sync was
    counted once and then forgotten, its records never made durable."""
    synced = failing_fsync(monkeypatch, failures=3)
    spool = open_spool(100)
    add(spool, 1)
    with pytest.raises(SyncFailed) as failed:
        spool.unsynced().flush()  # the segment's fsync fails, then the directory's
    assert failed.value.errno == errno.EIO
    [fd] = failed.value.unsynced.descriptors
    os.fstat(fd)  # still open
    assert failed.value.unsynced.directory == tmp_path
    spool.retry_sync(failed.value.unsynced)
    add(spool, 2)  # the same segment again: one descriptor for it, not two
    with pytest.raises(SyncFailed) as again:
        spool.unsynced().flush()  # the third failure, the segment's; the directory synced
    spool.retry_sync(again.value.unsynced)
    pending = spool.unsynced()
    assert len(pending.descriptors) == 1 and pending.directory is None
    pending.flush()  # the disk is back: synced at last, and closed
    assert len(synced) == 2  # the directory, then the segment
    with pytest.raises(OSError):
        os.fstat(pending.descriptors[0])
    assert drain(spool) == [1, 2]  # written all along: nothing was lost


def test_a_file_removed_while_its_sync_failed_is_not_tried_again(open_spool, monkeypatch):
    failing_fsync(monkeypatch, failures=2)
    spool = open_spool(100)
    add(spool, 1)
    with pytest.raises(SyncFailed) as failed:
        spool.unsynced().flush()
    assert drain(spool) == [1]  # delivered: its segment removed
    spool.retry_sync(failed.value.unsynced)
    assert spool.unsynced().descriptors == ()


def test_truncated_and_garbage_lines_are_skipped_and_counted(open_spool, tmp_path):
    spool = open_spool(100)
    add(spool, 0)
    add(spool, 1)
    spool.close()
    [segment] = tmp_path.glob("*.jsonl")
    with open(segment, "ab") as f:
        f.write(b"\x00\x00not json\n")
        f.write(b'{"id":99,"windows":0,"crc32":1,"batch":{}}\n')  # well-formed, wrong checksum
        f.write(segment.read_bytes()[:30])  # a crash mid-write

    again = open_spool(100)
    assert again.corrupt_records_total == 3
    add(again, 3)  # never glued to the truncated line
    assert drain(again) == [0, 1, 3]

    again.close()
    reopened = open_spool(100)  # delivered segments, damage and all, are gone
    assert (reopened.pending_windows, reopened.corrupt_records_total) == (0, 0)


def test_a_record_damaged_after_it_was_spooled_is_skipped_at_delivery(open_spool, tmp_path):
    spool = open_spool(100)
    add(spool, 0)
    add(spool, 1)
    [segment] = tmp_path.glob("*.jsonl")
    data = bytearray(segment.read_bytes())
    data[60:64] = b"####"  # inside the first body: only the checksum can tell
    segment.write_bytes(bytes(data))
    assert drain(spool) == [1]
    assert spool.corrupt_records_total == 1


def test_an_unreadable_cursor_means_sending_again_not_losing(open_spool, tmp_path):
    spool = open_spool(100)
    for seq in range(3):
        add(spool, seq)
    spool.pop_head()
    spool.close()
    (tmp_path / CURSOR_NAME).write_text("{trunc")
    assert drain(open_spool(100)) == [0, 1, 2]  # receivers drop repeats


def test_one_directory_serves_one_spool_at_a_time(open_spool):
    first = open_spool(10)
    with pytest.raises(SpoolError, match=f"in use by another sink, pid {os.getpid()}"):
        open_spool(10)
    first.close()
    open_spool(10).close()


def test_a_directory_that_cannot_be_created_is_named(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SpoolError, match=str(blocker)):
        WindowSpool(blocker / "spool", max_windows=10)


def test_deeply_nested_garbage_is_skipped_and_counted_not_fatal(open_spool, tmp_path):
    """Found by fuzzing (tests/fuzz/corpus/spool/crash-nested-*): a line or a cursor of JSON
    nested 100,000 deep raised RecursionError from the spool's constructor, so the agent could
    not start until the file was removed by hand."""
    spool = open_spool(100)
    add(spool, 1)
    spool.close()
    segment = next(tmp_path.glob("*.jsonl"))
    segment.write_bytes(b"[" * 100_000 + b',"batch":{}}\n' + segment.read_bytes())
    (tmp_path / CURSOR_NAME).write_bytes(b"[" * 100_000)
    spool = open_spool(100)
    assert (drain(spool), spool.corrupt_records_total) == ([1], 1)


# -- a full disk ------------------------------------------------------------------------------


@pytest.fixture
def full_disk(tmp_path):
    """A real 64 KiB filesystem, mounted for the test."""
    with small_filesystem(tmp_path / "disk") as disk:
        yield disk


@pytest.mark.root
def test_a_full_disk_at_a_new_segment_costs_only_the_refused_batch(full_disk):
    spool = WindowSpool(full_disk / "spool", 100, segment_bytes=1)  # every record opens a segment
    try:
        add(spool, 1)
        filler = fill_filesystem(full_disk)
        with pytest.raises(OSError) as refused:
            add(spool, 2)
        assert refused.value.errno == errno.ENOSPC
        filler.unlink()  # space returns: the next append must work without a restart
        add(spool, 3)
        add(spool, 4)
        assert (len(spool), spool.pending_windows) == (3, 3)
    finally:
        spool.close()
    again = WindowSpool(full_disk / "spool", 100)
    try:
        assert drain(again) == [1, 3, 4]
        assert again.corrupt_records_total == 0  # no half-written line left behind
    finally:
        again.close()


@pytest.mark.root
def test_a_line_cut_short_by_a_full_disk_is_taken_back(full_disk):
    spool = WindowSpool(full_disk / "spool", 100)  # one segment for every record
    try:
        add(spool, 1)
        filler = fill_filesystem(full_disk)
        filler.write_bytes(b"\0" * (len(filler.read_bytes()) - 8192))  # leaves two pages free
        big = {"site": "cnty1a", "windows": [{"seq": 2, "pad": "x" * 20_000}], "observations": [], "health": None}
        with pytest.raises(OSError) as refused:
            spool.append(json.dumps(big).encode(), 1)  # part of the line fits, not all of it
        assert refused.value.errno == errno.ENOSPC
        filler.unlink()
        add(spool, 3)
    finally:
        spool.close()
    again = WindowSpool(full_disk / "spool", 100)
    try:
        assert drain(again) == [1, 3]
        assert again.corrupt_records_total == 0
    finally:
        again.close()
