"""Root-cause hints over time: the engine's diagnoses, epoch by epoch, become hints with a
first and a last seen time, kept while the fault lasts and cleared once it has healed.

The engine (analyzer.rootcause.engine) is stateless: each epoch it says what explains that
interval. A hint is one (kind, suspects) seen in successive epochs; its slices, confidence
and evidence are the latest epoch's. It stays while it is diagnosed and for
`CLEAR_AFTER_EPOCHS - 1` epochs without it (one quiet interval is not a healed fault: a
window with no loss out of a 20%-loss link happens), and goes at the `CLEAR_AFTER_EPOCHS`-th
consecutive epoch without it: 2 intervals, so a healed fault leaves the list in about two
intervals (2 s on the lab, 20 s with 10 s intervals); a faint gray loss found only over
pooled intervals can be diagnosed for up to K - 1 intervals after its repair, so its hint
goes at most K + 1 intervals after it (analyzer.rootcause.pooling).

A hint shows once `CONFIRM_EPOCHS` consecutive epochs inferred it (2): its first seen time is
the first of them. The interval a fault begins or ends in holds only part of it, and one
interval's evidence of a part-time fault can point at the wrong place: agents probe their
targets at fixed moments of each interval, so the first losses of a fault that began late
in one fall on the targets probed after it began, and fit a smaller class on the way to
those targets better than the link at fault (in the lab, 10% loss on core-prov2 made its
first interval name prov2>city2b for 5 probes lost out of those towards cnty2b, the next
one core-prov2). Every wrong hint seen in the lab's root-cause tests was inferred in one
epoch alone. A later epoch confirms a pending hint when it infers one whose kinds overlap
and whose suspects share a part with it (the class a fault is told apart in may grow or
shrink as its evidence firms up). Diagnoses that name their part directly (in-situ
segments, `direct` and `note`) show at once.

A diagnosis whose kinds overlap a tracked hint's on the same suspects (`congestion|slice-isolation`
after `slice-isolation`, or back, as the evidence of a starved slice firms up or blurs) is the
same fault told more or less surely: it takes the tracked hint's place and its first seen
time, rather than showing as a second hint while the first lingers.

Times are interval ends (ns), one base for both feeds: an epoch is stamped with its
interval's end, and a note between epochs with the end of the interval it falls in
(`analyzer.service.RootCauseRunner.open_interval_end`), the stamp the epoch closing that
interval gives it; so first seen is never after last seen, and hints compare by either.

`hints()` answers objects with the fields of `analyzer.api.models.Hint`; `hint_rows()` flattens
them into one row per (slice, kind, suspect), the labels of `xnet_rootcause_hint` (value: the
confidence, the highest when two hints share a row). Thread-safe: the inference thread feeds,
the API reads.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

from analyzer.rootcause.model import Diagnosis, kind_parts

CLEAR_AFTER_EPOCHS = 2
CONFIRM_EPOCHS = 2


@dataclass(frozen=True, slots=True)
class Hint:
    """A RootCauseHint (docs/architecture.md): a diagnosis with first and last seen times (ns)."""

    kind: str
    suspects: tuple[str, ...]
    slices: tuple[str, ...]
    confidence: float
    evidence: tuple[str, ...]
    first_seen_ns: int
    last_seen_ns: int


@dataclass(frozen=True, slots=True)
class HintRow:
    slice: str
    kind: str
    suspect: str
    confidence: float


@dataclass(slots=True)
class _Tracked:
    hint: Hint
    missing: int = 0  # consecutive epochs without it


@dataclass(frozen=True, slots=True)
class _Pending:
    """A diagnosis inferred in the latest epochs and not shown yet."""

    kinds: frozenset[str]
    suspects: frozenset[str]
    first_seen_ns: int
    epochs: int  # consecutive epochs that inferred it

    def continued_by(self, kinds: frozenset[str], suspects: frozenset[str]) -> bool:
        return bool(self.kinds & kinds) and bool(self.suspects & suspects)


Key = tuple[str, tuple[str, ...]]


class HintTracker:
    def __init__(self, clear_after_epochs: int = CLEAR_AFTER_EPOCHS, confirm_epochs: int = CONFIRM_EPOCHS) -> None:
        if clear_after_epochs < 1:
            raise ValueError(f"clear_after_epochs must be at least 1, got {clear_after_epochs}")
        if confirm_epochs < 1:
            raise ValueError(f"confirm_epochs must be at least 1, got {confirm_epochs}")
        self.clear_after_epochs = clear_after_epochs
        self.confirm_epochs = confirm_epochs
        self._lock = threading.Lock()
        self._tracked: dict[Key, _Tracked] = {}
        self._pending: list[_Pending] = []
        self._current: tuple[Hint, ...] = ()

    def update(self, diagnoses: Iterable[Diagnosis], at_ns: int, direct: Iterable[Diagnosis] = ()) -> tuple[Hint, ...]:
        """Feed one epoch's diagnoses (analyzer.rootcause.model.Diagnosis), in epoch order:
        `diagnoses` inferred (shown once confirmed), `direct` naming their part directly
        (shown at once); returns the hints current after it."""
        with self._lock:
            # the direct ones first: kept over an inferred hint of the same key
            seen = self._raise([*((d, at_ns) for d in direct), *self._confirmed(diagnoses, at_ns)], at_ns)
            for key in [k for k in self._tracked if k not in seen]:
                tracked = self._tracked[key]
                tracked.missing += 1
                if tracked.missing >= self.clear_after_epochs:
                    del self._tracked[key]
            return self._publish()

    def note(self, diagnoses: Iterable, at_ns: int) -> tuple[Hint, ...]:
        """Diagnoses that came between epochs (in-situ segments, read as their blocks arrive),
        `at_ns` the end of the interval they fall in: each is raised or refreshed at once.
        Nothing else ages: only an epoch clears a hint."""
        with self._lock:
            self._raise([(d, at_ns) for d in diagnoses], at_ns)
            return self._publish()

    def _confirmed(self, diagnoses: Iterable[Diagnosis], at_ns: int) -> list[tuple[Diagnosis, int]]:
        """The inferred diagnoses that may show now, each with the first seen time of a hint
        it would start: those of a shown hint (same suspects, overlapping kinds) and those
        that a pending one continues for the `confirm_epochs`-th epoch. The others wait as
        pending until the next epoch, which drops the ones it does not continue."""
        shown, pending = [], []
        for d in diagnoses:
            key = _key(d)
            kinds, suspects = frozenset(kind_parts(d.kind)), frozenset(d.suspects)
            if key in self._tracked or self._overlapping(key) is not None:
                shown.append((d, at_ns))
                continue
            before = next((p for p in self._pending if p.continued_by(kinds, suspects)), None)
            first = before.first_seen_ns if before is not None else at_ns
            epochs = before.epochs + 1 if before is not None else 1
            if epochs >= self.confirm_epochs:
                shown.append((d, first))
            else:
                pending.append(_Pending(kinds, suspects, first, epochs))
        self._pending = pending
        return shown

    def _raise(self, diagnoses: Iterable[tuple[Diagnosis, int]], at_ns: int) -> set[Key]:
        """Raise or refresh a hint per (diagnosis, its first seen time if it is new)."""
        seen = set()
        for d, new_first in diagnoses:
            key = _key(d)
            if key in seen:  # the engine named it twice: keep the first (its most confident)
                continue
            seen.add(key)
            before = self._tracked.get(key) or self._take_overlapping(key)
            first = before.hint.first_seen_ns if before is not None else new_first
            # never earlier than seen already: a late block's note may name an older interval
            last = max(at_ns, before.hint.last_seen_ns) if before is not None else at_ns
            self._tracked[key] = _Tracked(
                Hint(
                    d.kind,
                    tuple(d.suspects),
                    tuple(sorted(d.slices)),
                    round(float(d.confidence), 3),
                    tuple(d.evidence),
                    first,
                    last,
                )
            )
        return seen

    def _publish(self) -> tuple[Hint, ...]:
        self._current = tuple(
            sorted(
                (t.hint for t in self._tracked.values()),
                key=lambda h: (-h.confidence, h.first_seen_ns, h.kind, h.suspects),
            )
        )
        return self._current

    def _overlapping(self, key: Key) -> Key | None:
        """The tracked hint's key on the same suspects whose kinds overlap this one's."""
        kinds = set(kind_parts(key[0]))
        return next((o for o in self._tracked if o[1] == key[1] and kinds & set(kind_parts(o[0]))), None)

    def _take_overlapping(self, key: Key) -> _Tracked | None:
        """The tracked hint on the same suspects whose kinds overlap this one's, taken out."""
        other = self._overlapping(key)
        return self._tracked.pop(other) if other is not None else None

    def hints(self) -> tuple[Hint, ...]:
        """The current hints, most confident first."""
        return self._current

    def rows(self) -> list[HintRow]:
        return hint_rows(self._current)


def _key(diagnosis: Diagnosis) -> Key:
    return (diagnosis.kind, tuple(sorted(diagnosis.suspects)))


def hint_rows(hints: Iterable) -> list[HintRow]:
    """One row per (slice, kind, suspect) of objects with kind, suspects, slices and confidence."""
    best: dict[tuple[str, str, str], float] = {}
    for hint in hints:
        for slice_name in hint.slices:
            for suspect in hint.suspects:
                key = (slice_name, hint.kind, suspect)
                best[key] = max(best.get(key, 0.0), hint.confidence)
    return [HintRow(s, k, suspect, c) for (s, k, suspect), c in sorted(best.items())]
