"""The soak's bookkeeping (bench/soak/ledger.py, sampler.py) on real stores: windows a
crashed analyzer forgot are lost only if no store takes them again (the bus replays them),
and the analyzer's memory is judged without the ledger that shares its process; an agent
that cannot be read in time is reported unreadable, not a crash of the soak."""

from __future__ import annotations

import os
import random
import subprocess
import tracemalloc
from types import SimpleNamespace

from analyzer.sla.verdicts import default_policies
from analyzer.store.memory import WindowStore
from analyzer.store.snapshot import restore_into, snapshot_text
from bench.soak.__main__ import Soak
from bench.soak.ledger import CHUNK_SEQS, Ledger, SentBySeq
from bench.soak.sampler import Sampler
from tests.analyzer_support import T0, W, batch, window


def tapped() -> Ledger:
    ledger = Ledger()
    ledger.install()
    return ledger


def test_windows_a_crash_forgot_are_lost_only_until_a_store_takes_them_again():
    ledger = tapped()
    try:
        shipped = batch(window(T0), window(T0 + 1), window(T0 + 2))
        now_ns = window(T0 + 3).end_ns
        assert WindowStore(default_policies()).ingest(shipped, now_ns).accepted == 3
        ledger.forgotten(3)  # the analyzer died before its snapshot: a new store knows none of them
        assert ledger.lost_to_crashes == 3
        restored = WindowStore(default_policies())
        assert restored.ingest(batch(window(T0), window(T0 + 1)), now_ns).accepted == 2  # replayed from the bus
        assert (ledger.lost_to_crashes, ledger.reaccepted_after_crash, ledger.doubled) == (1, 2, 0)
        assert restored.ingest(batch(window(T0 + 2)), now_ns).accepted == 1
        assert (ledger.lost_to_crashes, ledger.doubled) == (0, 0)
    finally:
        ledger.uninstall()


def test_a_restart_forgets_what_its_successor_s_checkpoint_does_not_hold():
    """The soak's analyzer restart: the successor is restored from the bus's checkpoint in
    its intake's thread, and the bus replays what came after; only that is re-accepted."""
    ledger = tapped()
    try:
        now_ns = window(T0 + 4).end_ns
        old = WindowStore(default_policies())
        assert old.ingest(batch(window(T0), window(T0 + 1)), now_ns).accepted == 2
        checkpoint = snapshot_text(old)  # the last periodic checkpoint
        assert old.ingest(batch(window(T0 + 2), window(T0 + 3)), now_ns).accepted == 2  # then the crash
        ledger.replaced(old.stats()["windows_ingested"])
        successor = WindowStore(default_policies())
        restore_into(successor, checkpoint, "checkpoint")
        replay = batch(window(T0 + 1), window(T0 + 2), window(T0 + 3))  # from the checkpoint's sequence
        assert successor.ingest(replay, now_ns).accepted == 2
        assert (ledger.forgotten_total, ledger.reaccepted_after_crash, ledger.doubled) == (2, 2, 0)
        assert ledger.lost_to_crashes == 0
        assert successor.ingest(batch(window(T0 + 3)), now_ns).accepted == 0  # and no allowance is left over
        assert successor.ingest(batch(window(T0 + 4)), window(T0 + 5).end_ns).accepted == 1
        assert (ledger.forgotten_total, ledger.doubled, ledger.refused_new) == (2, 0, 0)
    finally:
        ledger.uninstall()


def test_an_agent_s_reading_counts_the_windows_closed_until_it_answered():
    """A reading is asked at one time and answered later (curl started in the site, seconds on
    a loaded machine): windows that ended meanwhile are in the agent's counter."""
    ledger = tapped()
    try:
        store, now_ns = WindowStore(default_policies()), window(T0 + 20).end_ns
        store.ingest(batch(*(window(seq) for seq in range(T0, T0 + 10))), now_ns)
        key = window(T0).key
        labels = (key.source, key.target, key.slice, key.kind)
        interval_s, sent = W / 1e9, window(T0).sent
        asked, answered = (T0 + 5) * interval_s, (T0 + 8) * interval_s
        assert ledger.check_reading(key.source, {labels: 8 * sent}, 0.0, (asked, answered), interval_s)[0] == 1
        assert ledger.check_reading(key.source, {labels: 5 * sent}, 0.0, (asked, answered), interval_s)[0] == 1
        lost = ledger.check_reading(key.source, {labels: 10 * sent}, 0.0, (asked, answered), interval_s)
        assert lost[0] == 0 and lost[2][0]["agent_sent"] == 10 * sent  # two windows past the answer: not yet
    finally:
        ledger.uninstall()


def test_the_analyzer_memory_is_judged_without_the_ledger_it_holds():
    ledger = tapped()
    try:
        empty = ledger.footprint_mib()
        store, now_ns = WindowStore(default_policies()), window(T0 + 20_000).end_ns
        for first in range(T0, T0 + 20_000, 500):
            store.ingest(batch(*(window(seq) for seq in range(first, first + 500))), now_ns)
        grown = ledger.footprint_mib() - empty
        blocks = -(-20_000 // CHUNK_SEQS) + 1  # the run may straddle one more block
        assert 20_000 * 8 / (1 << 20) < grown < (blocks * CHUNK_SEQS * 8 + 4096) / (1 << 20)
    finally:
        ledger.uninstall()
    sampler = Sampler()
    sampler.sample(0.0, {"analyzer": os.getpid()})
    sampler.sample(1.0, {"analyzer": os.getpid()}, {"analyzer": grown})
    (_, whole, _), (_, judged, _) = sampler.incarnations[("analyzer", os.getpid())].samples
    assert whole - judged > grown * 0.9  # the resident size less the ledger (the process may grow meanwhile)


def test_a_path_s_record_answers_like_a_dict_of_seqs():
    record, model = SentBySeq(), {}
    for seq, sent in [(T0 + 5, 10), (T0, 0), (T0 + CHUNK_SEQS * 3, 7), (T0 + 5, 11), (T0 - 1, 300)]:
        record[seq], model[seq] = sent, sent
    assert list(record.items()) == sorted(model.items())
    assert list(record) == sorted(model) and len(record) == len(model) == 4
    assert T0 + 5 in record and T0 + 6 not in record and T0 + CHUNK_SEQS * 2 not in record


def test_the_ledger_keeps_no_object_per_window():
    """It shares the analyzer's process: one small object kept per window, amid the decoder's
    short-lived ones, would pin allocator pools and show as the analyzer's growth."""
    ledger, key = Ledger(), window(T0).key
    ledger.note("s", key, T0, 1)  # the path's blocks, made before the count
    ledger.note("s", key, T0 + 3000, 1)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for seq in range(T0 + 1, T0 + 3000):
            ledger.note("s", key, seq, 1000 + seq % 7)  # fresh int objects, as decoded
        grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename"))
    finally:
        tracemalloc.stop()
    assert len(ledger.seqs[("s", key)]) == 3001
    assert grown < 3000  # nothing a window, where a dict of ints kept ~60 bytes


def test_an_agent_whose_metrics_cannot_be_read_in_time_is_reported_unreadable_and_the_soak_goes_on():
    class StarvedLab:  # a machine so loaded that curl inside the site does not run in time
        def address(self, site: str) -> str:
            return "fd00::1"

        def exec(self, site: str, argv: list[str], timeout: float):
            raise subprocess.TimeoutExpired(argv, timeout)

    deployment = SimpleNamespace(restarts=None, api_url="http://[::1]:9", sites=["cnty1a"])
    soak = Soak(SimpleNamespace(), StarvedLab(), deployment, Ledger(), random.Random(1))
    soak.read_agent("cnty1a")
    assert [reading[:3] for reading in soak.readings] == [("cnty1a", {}, 0.0)]
