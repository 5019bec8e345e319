"""A real Prometheus scrapes the analyzer's /metrics: slice states and objectives by PromQL."""

from __future__ import annotations

import pytest

from analyzer.api.app import create_app
from analyzer.service import ApiServer
from analyzer.sla.verdicts import default_policies
from analyzer.store.memory import WindowStore
from tests.analyzer_support import T0, settled, window
from tests.prometheus_support import running_prometheus, wait_for

pytestmark = pytest.mark.tool("prometheus")


def test_prometheus_reads_slice_states_and_objectives(tmp_path):
    store = WindowStore(default_policies(), interval_s=10, catch_up_s=0)
    # video clean, egov losing 20 % in every interval: a fresh tracker's 1 h lookback pages
    # once 6 of its 360 intervals were bad; two lost probes of ten resolve 0.5% every other interval
    for seq in range(T0, T0 + 10):
        store.ingest_windows([window(seq, slice_="video"), window(seq, slice_="egov", lost=2)], settled(seq))
    store.advance(settled(T0 + 10))  # close the last interval, as the service clock does
    app = create_app(store, token=None, clock=lambda: settled(T0 + 10))
    with ApiServer(app, ("::1", 0)) as server, running_prometheus(tmp_path, f"[::1]:{server.address[1]}") as prom:
        states = wait_for(prom, "xnet_slice_state == 1", lambda r: len(r) >= 2)
        by_slice = {labels[-2]: labels[-1] for labels in states}  # (instance, job, slice, state) order
        assert by_slice.get("video") == "ok" and by_slice.get("egov") == "breached", states
        loss = wait_for(prom, 'xnet_slice_sla_objective_met{objective="two-way-packet-loss"}', lambda r: len(r) >= 2)
        assert {labels[-1]: value for labels, value in loss.items()} == {"egov": 0.0, "video": 1.0}
