"""The HTTP intake's journal on a real directory: what is recorded is there after a restart,
a snapshot's rotation truncates it, a record cut short or damaged is skipped, concurrent
writers share fsyncs and lose nothing, and a replay gives the store what it had."""

from __future__ import annotations

import threading

from analyzer.sla.verdicts import default_policies
from analyzer.store.journal import HEADER, IntakeJournal, replay
from analyzer.store.memory import WindowStore
from collector.contract.codec import encode_body
from tests.analyzer_support import T0, W, batch, window


def reopened(directory) -> list[bytes]:
    journal = IntakeJournal(directory)
    try:
        return list(journal.left_bodies())
    finally:
        journal.close()


def test_recorded_bodies_are_left_for_the_next_run_oldest_first(tmp_path):
    journal = IntakeJournal(tmp_path)
    for body in (b'{"a":1}', b'{"b":2}', b"\n{\n}\n"):  # a body may hold newlines: records are framed
        journal.record(body)
    journal.close()
    assert reopened(tmp_path) == [b'{"a":1}', b'{"b":2}', b"\n{\n}\n"]
    assert reopened(tmp_path) == [b'{"a":1}', b'{"b":2}', b"\n{\n}\n"]  # until a snapshot covers them


def test_a_snapshot_truncates_what_came_before_its_rotation(tmp_path):
    journal = IntakeJournal(tmp_path)
    journal.record(b"before")
    covered = journal.rotate()
    journal.record(b"after")
    journal.drop_through(covered)
    journal.close()
    assert reopened(tmp_path) == [b"after"]


def test_a_record_cut_short_ends_replay_and_a_damaged_one_is_skipped(tmp_path):
    journal = IntakeJournal(tmp_path)
    for body in (b"one", b"two", b"three"):
        journal.record(body)
    journal.close()
    (segment,) = tmp_path.glob("*.journal")
    data = bytearray(segment.read_bytes())
    data[HEADER.size + 3 + HEADER.size] ^= 0xFF  # the second body's first byte
    segment.write_bytes(bytes(data[:-2]))  # and the third cut short by a crash mid-write
    journal = IntakeJournal(tmp_path)
    assert list(journal.left_bodies()) == [b"one"]
    assert journal.damaged_total == 1
    journal.close()


def test_concurrent_writers_lose_nothing(tmp_path):
    journal = IntakeJournal(tmp_path)

    def write(n: int) -> None:
        for i in range(50):
            journal.record(f"{n}-{i}".encode())

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    journal.close()
    assert sorted(reopened(tmp_path)) == sorted(f"{n}-{i}".encode() for n in range(8) for i in range(50))


def test_a_replay_gives_a_store_the_windows_it_lacks_and_drops_the_rest(tmp_path):
    journal = IntakeJournal(tmp_path)
    journal.record(encode_body(batch(window(T0), window(T0 + 1))))
    journal.record(encode_body(batch(window(T0 + 2))))
    journal.close()
    store = WindowStore(default_policies(), catch_up_s=0)
    store.ingest(batch(window(T0)), (T0 + 3) * W)  # what the snapshot held
    journal = IntakeJournal(tmp_path)
    assert replay(journal, store, (T0 + 3) * W) == 2
    journal.close()
