"""The analyzer as every command assembles it: what an agent in the same process feeds in is
served and survives a restart; a damaged snapshot or a taken port fails before it starts."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from analyzer.service import SNAPSHOT_NAME, AnalyzerService, listening_socket
from analyzer.sla.verdicts import default_policies
from tests.analyzer_support import W, batch, window


def test_what_an_agent_feeds_in_is_served_and_kept_across_a_restart(tmp_path):
    now = time.time_ns() // W  # windows of the last intervals: the feeder ingests at the wall clock
    service = AnalyzerService(default_policies(), ("::1", 0), state_dir=tmp_path, feed=True, token="secret",
                              catch_up_s=0)
    try:
        url = service.serve_in_thread().url
        service.feeder.queue.put(batch(window(now - 2), window(now - 1)))
        service.feeder.join()
        assert [a["site"] for a in httpx.get(f"{url}/healthz", timeout=5).json()["agents"]] == ["cnty1a"]
        assert httpx.get(f"{url}/hints", timeout=5).json() == []  # inference runs, nothing to say
        assert httpx.post(f"{url}/v1/windows", content=b"{}", timeout=5).status_code == 401  # writes need the token
    finally:
        service.stop()  # the last snapshot
    restored = AnalyzerService(default_policies(), ("::1", 0), state_dir=tmp_path, catch_up_s=0)
    try:
        assert restored.store.stats()["windows_ingested"] == 2
        assert [a.site for a in restored.store.agents()] == ["cnty1a"]
    finally:
        restored.stop()


def test_a_damaged_snapshot_or_a_taken_port_fails_before_any_thread_starts(tmp_path):
    (tmp_path / SNAPSHOT_NAME).write_text("{broken")
    before = set(threading.enumerate())
    with pytest.raises(ValueError, match="not a store snapshot"):
        AnalyzerService(default_policies(), ("::1", 0), state_dir=tmp_path)
    taken = listening_socket("::1", 0)
    try:
        with pytest.raises(OSError):
            AnalyzerService(default_policies(), taken.getsockname()[:2])
    finally:
        taken.close()
    assert set(threading.enumerate()) == before
    assert (tmp_path / SNAPSHOT_NAME).read_text() == "{broken"  # left for the operator to look at
