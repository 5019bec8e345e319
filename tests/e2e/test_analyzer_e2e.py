"""End to end over real HTTP: the analyzer served by uvicorn on [::1], a real agent sink
(collector.outputs.sinks.HttpSink) posting windows built by collector.agent.windows.WindowBuilder or a
whole agent on loopback; and an analyzer outage during which the agent spools, after which
the analyzer restarts from its snapshot: no window lost, none counted twice."""

from __future__ import annotations

from pathlib import Path

import httpx

from analyzer.api.app import create_app
from analyzer.service import ApiServer, SnapshotKeeper, StoreFeeder, open_store
from analyzer.sla.verdicts import default_policies
from collector.agent.plan import load_plan
from collector.agent.runner import Agent
from collector.agent.windows import WindowBuilder
from collector.contract.records import LossDirection, PathKey, ProbeResult
from collector.contract.shipment import ShipmentBatch
from collector.outputs.sinks import Backoff, HttpSink, InProcessSink
from collector.system.clock import shared_host_clock
from tests.analyzer_support import T0, W, health
from tests.support import CountingBackoff, free_udp_port, nothing_in_flight, run_until, wait_until

TOKEN = "e2e-token"
FAST = Backoff(initial_s=0.02, cap_s=0.2)
PATHS = (
    PathKey("cnty1a", "core", "video", "stamp"),
    PathKey("cnty1a", "edge", "video", "stamp"),
    PathKey("cnty1a", "core", "egov", "stamp"),
)


def built_batch(seq: int) -> ShipmentBatch:
    """One interval of the three paths from ProbeResults through the agent's WindowBuilder:
    10 probes each, the video core path losing 2 of them forward."""
    windows = []
    for key in PATHS:
        builder = WindowBuilder(key, "fd00::1", W, settle_ns=0, slice_dscp=34 if key.slice == "video" else 26)
        for i in range(10):
            lost = key.target == "core" and key.slice == "video" and i < 2
            builder.add(
                ProbeResult(
                    key.target,
                    key.slice,
                    i,
                    seq * W + i * W // 10,
                    None if lost else 3_000_000 + i,
                    loss=LossDirection.FORWARD if lost else LossDirection.NONE,
                )
            )
        windows += builder.close_ready((seq + 1) * W)
    return ShipmentBatch("cnty1a", tuple(windows), health=health(), created_ns=(seq + 1) * W)


class Analyzer:
    """An analyzer as `xnetmon analyzer --state-dir` runs it, on a given port, with a clock
    held at the start of the test's intervals (windows then close as they complete, never by
    time, so the test decides nothing by the wall clock)."""

    def __init__(self, state_dir: Path, port: int = 0) -> None:
        self.store = open_store(state_dir, default_policies(), catch_up_s=0)
        self.keeper = SnapshotKeeper(self.store, state_dir, every_s=3600, tick_s=3600)
        app = create_app(self.store, token=TOKEN, clock=lambda: T0 * W)
        self.server = ApiServer(app, ("::1", port))
        self.url = self.server.url

    def get(self, path: str) -> dict:
        response = httpx.get(self.url + path, timeout=5)
        response.raise_for_status()
        return response.json()

    def stop(self) -> None:
        self.server.stop()
        self.keeper.stop()  # the snapshot at shutdown


def test_windows_from_an_http_sink_show_in_slices(tmp_path):
    analyzer = Analyzer(tmp_path / "state")
    sink = HttpSink(analyzer.url, TOKEN, tmp_path / "spool", backoff=FAST)
    try:
        for seq in range(T0, T0 + 6):
            sink.submit(built_batch(seq))
        wait_until(lambda: sink.delivered_total == 6 * len(PATHS))
        slices = {s["name"]: s for s in analyzer.get("/slices")}
        assert slices["video"]["paths"] == 2 and slices["egov"]["paths"] == 1
        # 10% loss against 0.1%: failing, but a fresh analyzer's burn counts over the whole
        # lookback, so six bad intervals read at-risk (a page needs the lookback's share).
        assert slices["video"]["status"] in ("at-risk", "breached")
        assert slices["video"]["error_budget_remaining"] < 1
        assert slices["egov"]["status"] == "ok"
        assert slices["video"]["worst_path"]["latest"]["lost_forward"] == 2
        assert analyzer.get("/healthz")["agents"][0]["site"] == "cnty1a"
    finally:
        sink.close()
        analyzer.stop()


def test_an_analyzer_outage_loses_no_window_and_counts_none_twice(tmp_path):
    state = tmp_path / "state"
    first = Analyzer(state)
    port = first.server.address[1]
    backoff = CountingBackoff(FAST)
    sink = HttpSink(first.url, TOKEN, tmp_path / "spool", backoff=backoff)
    try:
        for seq in range(T0, T0 + 5):
            sink.submit(built_batch(seq))
        wait_until(lambda: sink.delivered_total == 5 * len(PATHS))
        before = first.get("/slices/video")
        first.stop()
        restored = open_store(state, default_policies(), catch_up_s=0).slice_verdict("video", T0 * W)
        shown = before["verdict"]  # a restart is not an outage: the verdict continues as it was
        assert (restored.status, restored.since_ns, restored.error_budget_remaining, restored.intervals) == (
            shown["status"],
            shown["since_ns"],
            shown["error_budget_remaining"],
            shown["intervals"],
        )

        for seq in range(T0 + 4, T0 + 10):  # T0+4 again: its response "was lost"
            sink.submit(built_batch(seq))
        wait_until(lambda: sink.spool_depth == 6 * len(PATHS))  # the agent keeps them on disk
        wait_until(lambda: backoff.retries >= 3)  # and fails to deliver them, again and again
        assert sink.delivered_total == 5 * len(PATHS)

        second = Analyzer(state, port)
        try:
            wait_until(lambda: sink.spool_depth == 0 and sink.delivered_total == 11 * len(PATHS))
            stats = second.get("/healthz")["store"]
            assert stats["windows_ingested"] == 10 * len(PATHS)  # every window once
            assert stats["windows_duplicate"] == len(PATHS)  # the re-sent interval, ignored
            assert stats["windows_late"] == 0
            second.store.advance((T0 + 12) * W)  # the last interval closes by time
            verdict = second.store.slice_verdict("video", (T0 + 12) * W)
            assert verdict.intervals == 10 and verdict.status == "breached"
            assert second.store.path_verdict(PATHS[1], (T0 + 12) * W).intervals == 10
        finally:
            second.stop()
    finally:
        sink.close()


CONFIG = """
site: {{name: here}}
targets:
  - name: lo
    address: "::1"
    port: {port}
    probes: [stamp]
    slices: [video, egov]
probing: {{interval_s: 0.05, window_s: 0.5, timeout_s: 0.2}}
reflector: {{enabled: true, bind: ["::1"], port: {port}, rate_limit_pps: 0}}
metrics: {{listen: "[::1]:{metrics}"}}
"""


def test_a_real_agent_on_loopback_reaches_a_served_analyzer(tmp_path):
    config = tmp_path / "agent.yaml"
    config.write_text(CONFIG.format(port=free_udp_port(), metrics=free_udp_port()))
    store = open_store(None, default_policies(), interval_s=0.5, catch_up_s=0)
    server = ApiServer(create_app(store, token=TOKEN), ("::1", 0))
    sink = HttpSink(server.url, TOKEN, tmp_path / "spool", backoff=FAST)
    agent = Agent(load_plan(config), sink=sink, clock=shared_host_clock())

    try:  # until ten windows are delivered, at a moment no probe awaits its reply (the stop loses none)
        run_until(agent.run, agent.stop, lambda: sink.delivered_total >= 10 and nothing_in_flight(agent.scheduler))
        sink.close()
        wait_until(lambda: store.stats()["windows_ingested"] >= 10)
        slices = {s["name"]: s for s in httpx.get(server.url + "/slices", timeout=5).json()}
        assert slices["video"]["paths"] == 1 and slices["egov"]["paths"] == 1
        assert slices["video"]["status"] == "ok", slices["video"]
        assert slices["video"]["worst_path"]["latest"]["loss_ratio"] == 0
        assert store.stats()["windows_ingested"] == sink.delivered_total
    finally:
        server.stop()


def test_in_process_batches_reach_the_store_through_the_feeder():
    store = open_store(None, default_policies(), catch_up_s=0)
    feeder = StoreFeeder(store, clock=lambda: T0 * W)
    sink = InProcessSink(feeder.queue)
    for seq in range(T0, T0 + 3):
        sink.submit(built_batch(seq))
    feeder.join()
    feeder.stop()
    assert store.stats()["windows_ingested"] == 3 * len(PATHS) == sink.delivered_total
