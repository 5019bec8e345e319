"""Each slice's verdict over the last day, for the console's charts (GET /slices/{name}/history):
status, error budget, burn rates and each objective's observed value, sampled once a step by
a thread of its own (`HistorySampler`), at most `MAX_POINTS` per slice whatever the interval
(a step is at least the horizon / MAX_POINTS), so memory stays bounded."""

from __future__ import annotations

import math
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


class SliceHistory:
    """Bounded per-slice series of `SlicePoint`, one per `step_ns` at most; thread-safe."""

    def __init__(self, step_s: float, horizon_s: float = HORIZON_S) -> None:
        self.step_ns = round(max(step_s, horizon_s / MAX_POINTS) * 1e9)
        self.horizon_ns = round(horizon_s * 1e9)
        self._points: dict[str, deque[SlicePoint]] = {}
        self._lock = threading.Lock()

    def record(self, at_ns: int, verdicts: Mapping[str, object]) -> None:
        """One point per slice with a verdict (an analyzer SlaVerdict), unless its last is within a step."""
        length = min(MAX_POINTS, math.ceil(self.horizon_ns / self.step_ns))
        with self._lock:
            for name, verdict in verdicts.items():
                if verdict is None:
                    continue
                points = self._points.setdefault(name, deque(maxlen=length))
                if points and at_ns - points[-1].at_ns < self.step_ns:
                    continue
                points.append(
                    SlicePoint(
                        at_ns=at_ns,
                        status=verdict.status,  # type: ignore[attr-defined]
                        error_budget_remaining=_finite(verdict.error_budget_remaining),  # type: ignore[attr-defined]
                        burn_rates=tuple(verdict.burn_rates),  # type: ignore[attr-defined]
                        observed=tuple((o.name, _finite(o.observed)) for o in verdict.objectives),  # type: ignore[attr-defined]
                    )
                )

    def points(self, slice_name: str, since_ns: int) -> list[SlicePoint]:
        with self._lock:
            return [p for p in self._points.get(slice_name, ()) if p.at_ns >= since_ns]


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
