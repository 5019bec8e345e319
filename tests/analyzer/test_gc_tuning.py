"""The analyzer's garbage-collector settings: set by the service every command assembles,
and what it restored at start is out of later collections."""

from __future__ import annotations

import gc
import weakref

from analyzer.gc_tuning import THRESHOLDS, freeze_restored, tune_for_long_lived_store
from analyzer.service import AnalyzerService
from analyzer.sla.verdicts import default_policies


def test_the_service_runs_with_the_analyzer_thresholds():
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    try:
        service = AnalyzerService(default_policies(), ("::1", 0), catch_up_s=0)
        try:
            assert gc.get_threshold() == THRESHOLDS
        finally:
            service.stop()
    finally:
        gc.set_threshold(*before)


def test_what_was_restored_is_frozen_and_new_objects_are_not():
    before = gc.get_threshold()
    try:
        tune_for_long_lived_store()
        restored = [{"path": i} for i in range(1000)]
        freeze_restored()
        frozen = gc.get_freeze_count()
        assert frozen >= len(restored)
        later = [{"path": i} for i in range(1000)]
        assert gc.get_freeze_count() == frozen and len(later) == 1000
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_a_stopped_service_is_collected():
    """The lab all-in-one restarts its analyzer inside one process: the old service and its
    store must go. A service is a reference cycle (its API app's closures hold it), and a
    service frozen at construction would be kept for good."""
    frozen = gc.get_freeze_count()
    service = AnalyzerService(default_policies(), ("::1", 0), catch_up_s=0)
    service.serve_in_thread()
    service.stop()
    gone, store_gone = weakref.ref(service), weakref.ref(service.store)
    del service
    gc.collect()
    assert gone() is None and store_gone() is None
    assert gc.get_freeze_count() == frozen
