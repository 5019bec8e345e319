"""Saving the flow receiver's templates and sampling rates, from a thread of its own.

The receiver's thread never waits for a disk: under the receiver's lock this thread only
copies what changed (`TemplateCache.snapshot`, `SamplingTable.snapshot`: shallow copies of
immutable entries), then serialises, writes and fsyncs with the lock released, so
datagrams keep being decoded and scrapes keep being answered however slow the disk is.

A write that fails (a full disk, a read-only or vanished directory) is counted through
`count_error`, logged once until a save succeeds again, and leaves the state marked unsaved
so the next round tries again; the thread carries on whatever happens.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from collector.flow_export.sampling import SamplingTable
from collector.flow_export.templates import TemplateCache

log = logging.getLogger(__name__)

CHECK_EVERY_S = 1.0  # how often it looks; TemplateCache.due_snapshot decides how often it writes


class StateSaver:
    def __init__(
        self,
        lock: threading.Lock,
        templates: TemplateCache,
        sampling: SamplingTable,
        sampling_path: Path | None,
        count_error: Callable[[], None],
    ) -> None:
        self._lock = lock
        self._templates = templates
        self._sampling = sampling
        self._sampling_path = sampling_path
        self._count_error = count_error  # called with the lock held
        self._failing = False
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def persistent(self) -> bool:
        return self._templates.path is not None or self._sampling_path is not None

    def save(self, now: float | None = None, *, force: bool = False) -> bool:
        """Write what is due (everything with `force`); False when a write failed."""
        now = time.time() if now is None else now
        templates_path, sampling_path = self._templates.path, self._sampling_path
        with self._lock:
            templates = None
            if templates_path is not None:
                templates = self._templates.snapshot(now) if force else self._templates.due_snapshot(now)
            sampling = None
            if sampling_path is not None and (force or self._sampling.changed):
                sampling = self._sampling.snapshot()
        ok = True
        if templates is not None and templates_path is not None:
            ok = self._write(lambda: templates.write(templates_path), self._templates.unsaved)
        if sampling is not None and sampling_path is not None:
            ok = self._write(lambda: sampling.write(sampling_path), self._sampling.unsaved) and ok
        if ok and self._failing:
            self._failing = False
            log.info("flow state saved again")
        return ok

    def _write(self, write: Callable[[], None], unsaved: Callable[[], None]) -> bool:
        try:
            write()
        except Exception as exc:  # OSError mostly; whatever it is, the next round tries again
            with self._lock:
                unsaved()
                self._count_error()
            if not self._failing:
                self._failing = True
                log.warning("cannot save flow state (templates, sampling rates): %s", exc)
            return False
        return True

    # -- the thread --------------------------------------------------------------------------

    def start(self) -> None:
        if not self.persistent or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="flow-state-saver", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(CHECK_EVERY_S):
            try:
                self.save()
            except Exception:  # a bug here must not end the saving for good
                with self._lock:
                    self._count_error()
                log.exception("flow state saver")

    def stop(self) -> None:
        """Stop the thread and save everything once more."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        if self.persistent:
            self.save(force=True)
