"""Every window the analyzer was offered, from a tap on `WindowStore.ingest`: none lost,
none counted twice.

The tap sits on the class, so it sees every store, including one started after a restart,
from its first batch. Per batch it compares what the store accepted with the windows the
soak had never seen before (by path key and seq): accepted beyond the new ones were counted
twice, new ones not accepted were refused (stale or "future"), both losses of accounting.
At the end, `gaps` lists the seqs missing inside each path's run that no restart of its
agent explains, and `unmatched` tells a window the agent made and the analyzer never saw
from one the agent never made: an agent's xnet_probe_sent_total is the sum of the `sent` of
the windows it closed, so it must equal the sum over the windows offered to the analyzer.
"""

from __future__ import annotations

import re
import sys
import threading
import weakref
from array import array
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from analyzer.store.memory import WindowStore

SENT_LINE = re.compile(r"^xnet_probe_sent_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$", re.MULTILINE)
LABEL = re.compile(r'(\w+)="([^"]*)"')


def sent_totals(metrics_text: str) -> dict[tuple[str, str, str, str], float]:
    """An agent's xnet_probe_sent_total per path (src, dst, slice, probe), from its /metrics."""
    totals = {}
    for match in SENT_LINE.finditer(metrics_text):
        labels = dict(LABEL.findall(match["labels"]))
        totals[(labels["src"], labels["dst"], labels["slice"], labels["probe"])] = float(match["value"])
    return totals


CHUNK_SEQS = 4096  # seqs per block of a path's record: 32 KiB, an hour of 1 s windows
NOT_SEEN = -1


class SentBySeq:
    """One path's windows, seq -> sent, in blocks of plain int64 slots (NOT_SEEN where no
    window came). The ledger shares the analyzer's process: a dict of int objects would keep
    one small object per window alive amid the decoder's short-lived ones, pinning
    allocator pools the analyzer's own memory is then judged by. Blocks are big, few and
    counted exactly (`nbytes`)."""

    __slots__ = ("_blocks", "_count")

    def __init__(self) -> None:
        self._blocks: dict[int, array] = {}
        self._count = 0

    def __contains__(self, seq: int) -> bool:
        block = self._blocks.get(seq // CHUNK_SEQS)
        return block is not None and block[seq % CHUNK_SEQS] != NOT_SEEN

    def __setitem__(self, seq: int, sent: int) -> None:
        block = self._blocks.get(seq // CHUNK_SEQS)
        if block is None:
            block = self._blocks[seq // CHUNK_SEQS] = array("q", [NOT_SEEN]) * CHUNK_SEQS
        self._count += block[seq % CHUNK_SEQS] == NOT_SEEN
        block[seq % CHUNK_SEQS] = sent

    def __len__(self) -> int:
        return self._count

    def items(self) -> Iterator[tuple[int, int]]:
        """(seq, sent), in seq order."""
        for number in sorted(self._blocks):
            base = number * CHUNK_SEQS
            yield from ((base + i, sent) for i, sent in enumerate(self._blocks[number]) if sent != NOT_SEEN)

    def __iter__(self) -> Iterator[int]:
        return (seq for seq, _ in self.items())

    @property
    def nbytes(self) -> int:
        return sys.getsizeof(self._blocks) + sum(sys.getsizeof(block) for block in self._blocks.values())


@dataclass(slots=True)
class Ledger:
    seqs: dict[tuple, SentBySeq] = field(default_factory=lambda: defaultdict(SentBySeq))  # (site, key) -> seq -> sent
    offered: int = 0  # windows in batches, repeats included
    new: int = 0  # distinct (key, seq) first offered
    accepted: int = 0  # what the stores said they took
    doubled: int = 0  # accepted although offered and accepted before
    refused_new: int = 0  # new, but not accepted
    reaccepted_after_crash: int = 0  # accepted again by a store restored from an older snapshot
    crash_allowance: int = 0  # windows a crash made the store forget: they may be accepted again
    forgotten_total: int = 0  # windows analyzer restarts made a store forget, in all
    replaced_holding: int | None = None  # windows the store a restart replaced had taken, until its successor ingests
    # every store seen ingesting (weakly: an id() could be a freed store's, reused)
    stores: weakref.WeakSet = field(default_factory=weakref.WeakSet)
    ingest_errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    original: Callable | None = None  # WindowStore.ingest before the tap

    def install(self) -> None:
        original = WindowStore.ingest
        ledger = self

        def ingest(store, batch, now_ns):
            with ledger.lock:  # the check and the ingest together: concurrent repeats stay exact
                ledger.first_ingest(store)
                fresh = {(w.key, w.seq, w.sent) for w in batch.windows if w.seq not in ledger.seqs[(batch.site, w.key)]}
                try:
                    result = original(store, batch, now_ns)
                except Exception:
                    ledger.ingest_errors += 1
                    raise
                ledger.record(batch, fresh, result.accepted)
            return result

        WindowStore.ingest = ingest  # type: ignore[method-assign]
        self.original = original

    def uninstall(self) -> None:
        WindowStore.ingest = self.original  # type: ignore[method-assign]

    def record(self, batch, fresh: set, accepted: int) -> None:
        self.offered += len(batch.windows)
        self.new += len(fresh)
        self.accepted += accepted
        for key, seq, sent in fresh:
            self.seqs[(batch.site, key)][seq] = sent
        excess = accepted - len(fresh)
        if excess > 0:
            again = min(excess, self.crash_allowance)
            self.crash_allowance -= again
            self.reaccepted_after_crash += again
            self.doubled += excess - again
        elif excess < 0:
            self.refused_new += -excess

    def forgotten(self, windows: int) -> None:
        """A crash lost `windows` the store had accepted: agents may not send them again, but
        if they do (a batch in flight), accepting them once more is not a double count."""
        with self.lock:
            self.crash_allowance += windows
            self.forgotten_total += windows

    def replaced(self, windows_taken: int) -> None:
        """A restart replaced a store that had taken `windows_taken` (its windows_ingested).
        Its successor is restored from the bus's checkpoint in its intake's thread, before it
        ingests anything: what it forgot is known at its first ingest (`first_ingest`)."""
        with self.lock:
            self.replaced_holding = windows_taken

    def first_ingest(self, store: WindowStore) -> None:
        """Called under the lock before each ingest: a store seen for the first time after a
        restart holds what its checkpoint restored; the rest was forgotten."""
        if store in self.stores:
            return
        self.stores.add(store)
        if self.replaced_holding is not None:
            forgotten = max(0, self.replaced_holding - store.counters["windows_ingested"])
            self.crash_allowance += forgotten
            self.forgotten_total += forgotten
            self.replaced_holding = None

    @property
    def lost_to_crashes(self) -> int:
        """Windows a crashed analyzer forgot and no store took again since (the bus's replay
        or an agent's resend brings them back): those alone are lost."""
        return self.crash_allowance

    def note(self, site: str, key, seq: int, sent: int) -> None:
        """A window seen outside the tap (a reading of the stream after the run)."""
        self.seqs[(site, key)][seq] = sent

    def footprint_mib(self) -> float:
        """What the ledger itself holds, in MiB: it lives in the analyzer's process and grows
        with every window, so the analyzer's memory is judged without it."""
        with self.lock:
            total = sys.getsizeof(self.seqs) + sum(seqs.nbytes for seqs in self.seqs.values())
        return total / (1 << 20)

    def gaps(self, restarts: dict[str, list[float]], interval_s: float, settle_s: float) -> list[dict]:
        """Seqs missing inside each path's run, except next to a restart of its agent (the
        windows a stopped agent never closed) and the last `settle_s` (still in flight)."""
        found = []
        for (site, key), seqs in self.seqs.items():
            ordered = list(seqs)  # in order
            last = ordered[-1] - settle_s / interval_s
            for before, after in zip(ordered, ordered[1:]):
                if after - before <= 1 or after > last:
                    continue
                start_s, end_s = (before + 1) * interval_s, after * interval_s
                if any(start_s - 3 * interval_s <= t <= end_s + interval_s for t in restarts.get(site, ())):
                    continue
                found.append(
                    {
                        "site": site,
                        "path": f"{key.source}>{key.target} {key.slice} {key.kind}",
                        "missing_seqs": [before + 1, after - 1],
                        "windows": after - before - 1,
                    }
                )
        return found

    def check_reading(
        self, site: str, sent_totals: dict[tuple, float], since_s: float, at_s: tuple[float, float], interval_s: float
    ):
        """One reading of an agent's counters (its incarnation started at `since_s`, read
        between `at_s`'s two times: the agent answered at some moment in between) against the
        windows the analyzer was offered from it: per path "exact" (the counter is the sum over
        every window up to a cut-off around the reading: the window that ended last may still
        have been open), "after-reset" (the sum over the windows since some point only: the
        agent's /metrics drops a path that closed no window for 3 window lengths and counts it
        from zero again, so windows before that point cannot be checked), or a mismatch
        (windows made and lost on the way)."""
        exact, after_reset, mismatches = 0, 0, []
        with self.lock:
            paths = {key: dict(seqs.items()) for (s, key), seqs in self.seqs.items() if s == site}
        for labels, total in sent_totals.items():
            key = next((k for k in paths if (k.source, k.target, k.slice, k.kind) == labels), None)
            windows = sorted((seq, sent) for seq, sent in (paths.get(key) or {}).items() if seq * interval_s >= since_s)
            prefix = [0]
            for _seq, sent in windows:
                prefix.append(prefix[-1] + sent)
            asked_s, answered_s = at_s
            ends = [asked_s - back * interval_s for back in range(3, 0, -1)]  # still open, settling
            ends += [asked_s + step * interval_s for step in range(int((answered_s - asked_s) / interval_s) + 1)]
            cuts = {sum(1 for seq, _ in windows if (seq + 1) * interval_s <= end) for end in [*ends, answered_s]}
            if any(prefix[cut] == total for cut in cuts):
                exact += 1
            elif any(prefix[cut] - total in set(prefix[: cut + 1]) for cut in cuts):
                after_reset += 1
            else:
                mismatches.append(
                    {
                        "site": site,
                        "path": " ".join(labels),
                        "since": since_s,
                        "at": list(at_s),
                        "agent_sent": int(total),
                        "offered_sent": sorted(prefix[cut] for cut in cuts),
                        "offered_seqs": [windows[0][0], windows[-1][0], len(windows)] if windows else [],
                    }
                )
        return exact, after_reset, mismatches
