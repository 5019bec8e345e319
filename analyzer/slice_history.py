"""Each slice's verdict over the last day, for the console's charts (GET /slices/{name}/history):
status, error budget, burn rates and each objective's observed value, sampled once a step by
a thread of its own (`HistorySampler`), at most `MAX_POINTS` per slice whatever the interval
(a step is at least the horizon / MAX_POINTS), so memory stays bounded.

A point is kept packed (its numbers in one bytes object, its names shared by every point of
the same shape) and made a `SlicePoint` when read: a day of 8,640 points per slice as
objects took ~1,000 B a point, ~33 MiB for four slices, which an analyzer grew into over its
first day (~1.4 MiB/h at 10 s steps); packed, ~210 B."""

from __future__ import annotations

import math
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from collector.system.loop_errors import LoopErrors

HORIZON_S = 24 * 3600  # the longest range the console charts
MAX_POINTS = 8640  # per slice: 24 h at 10 s


@dataclass(frozen=True, slots=True)
class SlicePoint:
    at_ns: int
    status: str
    error_budget_remaining: float | None
    burn_rates: tuple[tuple[str, float], ...]
    observed: tuple[tuple[str, float | None], ...]  # objective name -> its latest observed value


# (burn-rate labels, objective names) of a point: one tuple shared by every point of that shape
_Shape = tuple[tuple[str, ...], tuple[str, ...]]
# a point kept: its status, its shape, and at_ns then budget, burn rates and observed values
# packed as one int64 and float64s, NaN standing for None
_Packed = tuple[str, _Shape, bytes]
_AT = struct.Struct("=q")
_LAYOUTS: dict[int, struct.Struct] = {}
_NONE = math.nan


class SliceHistory:
    """Bounded per-slice series of points, one per `step_ns` at most; thread-safe."""

    def __init__(self, step_s: float, horizon_s: float = HORIZON_S) -> None:
        self.step_ns = round(max(step_s, horizon_s / MAX_POINTS) * 1e9)
        self.horizon_ns = round(horizon_s * 1e9)
        self._points: dict[str, deque[_Packed]] = {}
        self._shapes: dict[_Shape, _Shape] = {}
        self._lock = threading.Lock()

    def record(self, at_ns: int, verdicts: Mapping[str, object]) -> None:
        """One point per slice with a verdict (an analyzer SlaVerdict), unless its last is within a step."""
        length = min(MAX_POINTS, math.ceil(self.horizon_ns / self.step_ns))
        with self._lock:
            for name, verdict in verdicts.items():
                if verdict is None:
                    continue
                points = self._points.setdefault(name, deque(maxlen=length))
                if points and at_ns - _at_ns(points[-1]) < self.step_ns:
                    continue
                points.append(self._pack(at_ns, verdict))

    def _pack(self, at_ns: int, verdict) -> _Packed:
        burn_rates = tuple(verdict.burn_rates)
        objectives = tuple(verdict.objectives)
        shape = (tuple(label for label, _ in burn_rates), tuple(o.name for o in objectives))
        shape = self._shapes.setdefault(shape, shape)
        numbers = [_stored(verdict.error_budget_remaining), *(rate for _, rate in burn_rates)]
        numbers += [_stored(o.observed) for o in objectives]
        return verdict.status, shape, _layout(len(numbers)).pack(at_ns, *numbers)

    def points(self, slice_name: str, since_ns: int) -> list[SlicePoint]:
        kept = []
        with self._lock:
            for packed in reversed(self._points.get(slice_name, ())):  # newest first, to the range's start
                if _at_ns(packed) < since_ns:
                    break
                kept.append(packed)
        return [_unpack(p) for p in reversed(kept)]


def _at_ns(packed: _Packed) -> int:
    return _AT.unpack_from(packed[2])[0]


def _stored(value: float | None) -> float:
    value = _finite(value)
    return _NONE if value is None else value


def _layout(numbers: int) -> struct.Struct:
    """at_ns and `numbers` float64s."""
    layout = _LAYOUTS.get(numbers)
    if layout is None:
        layout = _LAYOUTS[numbers] = struct.Struct(f"=q{numbers}d")
    return layout


def _unpack(packed: _Packed) -> SlicePoint:
    status, (labels, names), data = packed
    at_ns, budget, *values = _layout(1 + len(labels) + len(names)).unpack(data)
    cut = len(labels)
    return SlicePoint(
        at_ns=at_ns,
        status=status,
        error_budget_remaining=None if budget != budget else budget,  # NaN: none
        burn_rates=tuple(zip(labels, values[:cut])),
        observed=tuple((n, None if v != v else v) for n, v in zip(names, values[cut:])),
    )


def _finite(value: float | None) -> float | None:
    """JSON has no infinity: above the largest RTT bucket reads as no value."""
    return value if value is None or math.isfinite(value) else None


class HistorySampler:
    """Samples `verdicts(now)` into `history` every step, in a daemon thread; an error is counted
    (component "history") and the next step tries again."""

    def __init__(
        self,
        history: SliceHistory,
        verdicts: Callable[[int], Mapping[str, object]],
        errors: LoopErrors,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.history, self.verdicts, self.errors, self.clock = history, verdicts, errors, clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="xnetmon-analyzer-history", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def sample(self) -> None:
        now = self.clock()
        self.history.record(now, self.verdicts(now))

    def _run(self) -> None:
        while not self._stop.wait(self.history.step_ns / 1e9):
            with self.errors.survive("history", "sampling the slices' verdicts"):
                self.sample()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
