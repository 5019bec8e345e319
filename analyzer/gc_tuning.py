"""The analyzer process's garbage-collector thresholds.

The store keeps a few container objects per window for as long as the path lives (its
tracker's lookbacks, interval statistics, pooled events). With CPython's default thresholds
(700, 10, 10) a young collection runs every couple of hundred windows and the older passes
keep walking the whole store, which cost 15-35% of parse + store in
`bench/analyzer_ingest.py` (its `parse+store, default gc` row). Reference cycles are rare
here (a forgotten path's objects go by reference counting), so a far larger first threshold
keeps the collector for them at a fraction of the cost. What the `analyzer` command's process
restored at start (snapshot, journal) lives as long as the process: `freeze_restored` takes
it out of every later collection. Only that command freezes: a frozen object in a reference
cycle is never collected, and a service is one (its API app's closures hold it), so a
service made and stopped inside a longer-lived process (the lab all-in-one's analyzer
restarts, tests) would stay in memory for good.
"""

from __future__ import annotations

import gc

THRESHOLDS = (50_000, 20, 20)


def tune_for_long_lived_store() -> None:
    gc.set_threshold(*THRESHOLDS)


def freeze_restored() -> None:
    """Move every object alive now to the collector's permanent generation."""
    gc.collect()
    gc.freeze()
