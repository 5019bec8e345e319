"""The lab all-in-one restarts its analyzer inside its own process (the soak does, at random):
the analyzer it replaced must be freed with its store by the restart itself (it lies in
reference cycles that the analyzer's collector thresholds leave for hours), and the
deployment's root-cause runner must be the new analyzer's. A process that kept every
replaced analyzer grew by a store per restart, which the soak read as the analyzer's memory
climbing."""

from __future__ import annotations

import gc
import signal
import weakref

import pytest

from tests.support import wait_until
from xnetmon.allinone import LAB_SITES, lab_deployment

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.tool("nats-server")]


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["KILL", "TERM"])
def test_a_restarted_analyzer_frees_the_one_it_replaced(lab, tmp_path, signum):
    with lab_deployment(lab, tmp_path, LAB_SITES, api_port=0) as deployment:
        restarts = deployment.restarts
        assert restarts is not None  # the lab shape

        def taking() -> bool:  # the analyzer running now has taken windows
            return restarts.analyzer.store.stats()["windows_ingested"] > 0

        wait_until(taking, timeout=120, what="the first windows")
        replaced, replaced_store = weakref.ref(restarts.analyzer), weakref.ref(restarts.analyzer.store)
        taken = restarts.analyzer.store.stats()["windows_ingested"]
        gc.disable()  # no automatic collection may do the restart's work
        try:
            final = restarts.restart_analyzer(signum)
            assert replaced() is None and replaced_store() is None
        finally:
            gc.enable()
        assert final["windows_ingested"] >= taken
        wait_until(taking, timeout=120, what="the new analyzer's windows")
        assert deployment.inference is restarts.analyzer.inference
