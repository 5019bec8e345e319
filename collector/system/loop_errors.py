"""Errors of background loops, counted by component so that a loop that meets one carries on
and an operator still sees it: the analyzer's (`xnet_analyzer_errors_total{component}` and
`/healthz`: `snapshot` writing the store's snapshot, `intervals` closing intervals on the
clock, `rootcause` inference, `feeder` in-process batches into the store, `journal`; an intake
that another part adds names its own) and the agent's (`xnet_collector_errors_total{component}`:
`discovery` traces, `health` its own figures, `spool` and `ship` its sink's two threads).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

log = logging.getLogger(__name__)

MAX_ERROR_TEXT = 300  # characters of the latest error kept per component


@dataclass(frozen=True, slots=True)
class LatestError:
    count: int
    last_ns: int
    last: str  # the exception's type and message, cut to MAX_ERROR_TEXT


class LoopErrors:
    """Thread-safe counts of the errors each component met, with the latest one's words."""

    def __init__(self, clock: Callable[[], int] = time.time_ns) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._by_component: dict[str, LatestError] = {}

    def note(self, component: str, exc: BaseException) -> None:
        text = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_TEXT]
        with self._lock:
            count = self._by_component[component].count if component in self._by_component else 0
            self._by_component[component] = LatestError(count + 1, self._clock(), text)

    @contextmanager
    def survive(self, component: str, what: str) -> Iterator[None]:
        """Run the block; an exception in it is logged, counted for `component`, and ends only the
        block, never the loop around it."""
        try:
            yield
        except Exception as exc:
            log.exception("%s failed (%s); carrying on", what, component)
            self.note(component, exc)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {name: e.count for name, e in sorted(self._by_component.items())}

    def latest(self) -> dict[str, LatestError]:
        with self._lock:
            return dict(sorted(self._by_component.items()))
