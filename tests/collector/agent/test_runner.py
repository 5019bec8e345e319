"""The agent on loopback: windows, health and traced paths reach the sink and /metrics;
a reload keeps running schedules and refuses a broken file."""

from __future__ import annotations

import queue
import socket
import subprocess
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from collector.agent.plan import load_plan
from collector.agent.runner import Agent
from collector.outputs.sinks import InProcessSink
from collector.system.clock import shared_host_clock
from tests.support import DEADLINE_S, free_udp_port, nothing_in_flight, run_until

CONFIG = """
site: {{name: here}}
targets:
  - name: lo
    address: "::1"
    port: {port}
    probes: [stamp]
    slices: [{slices}]
probing: {{interval_s: 0.05, window_s: 0.5, timeout_s: 0.2, trace: {{enabled: true, period_s: 60}}}}
reflector: {{enabled: true, bind: ["::1"], port: {port}, rate_limit_pps: 0}}
metrics: {{listen: "[::1]:{metrics}"}}
"""


def write_config(path: Path, port: int, metrics: int, slices: str) -> None:
    path.write_text(CONFIG.format(port=port, metrics=metrics, slices=slices))


def test_agent_ships_windows_health_and_paths_and_serves_metrics(tmp_path):
    port, metrics_port = free_udp_port(), free_udp_port()
    config = tmp_path / "agent.yaml"
    write_config(config, port, metrics_port, "video, egov")
    shipped: list = []
    agent = Agent(load_plan(config), sink=InProcessSink(shipped.append), clock=shared_host_clock())
    scraped = []

    def scrape():
        with urllib.request.urlopen(f"http://[::1]:{metrics_port}/metrics", timeout=DEADLINE_S) as response:
            scraped.append(response.read().decode())

    def enough_shipped() -> bool:
        """2.5 s worth of probes shipped, both slices traced, and no probe awaiting its reply."""
        sent = sum(w.sent for b in list(shipped) for w in b.windows)
        traced = {o.slice for b in list(shipped) for o in b.observations}
        return sent >= 2 * 50 and traced == {"video", "egov"} and nothing_in_flight(agent.scheduler)

    # Scrape once the first windows of both slices are counted; stop once enough was shipped.
    run_until(agent.run, agent.stop, enough_shipped, during=(lambda: agent.windows_total >= 2, scrape))
    windows = [w for b in shipped for w in b.windows]
    assert {w.key.slice for w in windows} == {"video", "egov"}
    assert sum(w.sent for w in windows) >= 2 * 50 and all(w.received == w.sent for w in windows)
    assert all(b.health is not None and b.health.site == "here" for b in shipped)
    observations = [o for b in shipped for o in b.observations]
    assert {o.slice for o in observations} == {"video", "egov"} and all(o.reached for o in observations)
    last_of_each_slice = {w.key.slice: w for w in windows}.values()
    # Windows closed after the trace carry its fingerprint.
    assert {w.path_fingerprint for w in last_of_each_slice} == {observations[0].fingerprint}
    assert 'xnet_probe_sent_total{dst="lo",probe="stamp",slice="video",src="here"}' in scraped[0]
    assert 'xnet_collector_sessions{src="here"} 2.0' in scraped[0]


def test_a_lag_between_two_shipments_reaches_the_next_one_whatever_refreshed_in_between(tmp_path):
    """The health loop refreshes the agent's figures between window closes and ships nothing:
    the lag summary it took was lost, so whether an agent's stall (or, before probing skipped
    the probes planned before it began, its start) reached the analyzer depended on where in
    the window it fell."""
    port, metrics_port = free_udp_port(), free_udp_port()
    config = tmp_path / "agent.yaml"
    write_config(config, port, metrics_port, "video")
    shipped: list = []
    agent = Agent(load_plan(config), sink=InProcessSink(shipped.append), clock=shared_host_clock())
    stall_ns = 3_000_000_000
    marked = []

    def stall_then_health_loop_refresh() -> None:
        marked.append(len(shipped))
        agent.scheduler.telemetry.lag_samples.append(stall_ns)  # a probe that left 3 s late
        agent._refresh_health()  # what the health loop does between two window closes

    run_until(
        agent.run,
        agent.stop,
        lambda: marked and len(shipped) > marked[0],
        during=(lambda: len(shipped) >= 1, stall_then_health_loop_refresh),
    )
    after = [b.health for b in shipped[marked[0] :]]
    assert after[0] is not None and after[0].scheduling_lag_max_ns >= stall_ns, after[0]


def test_reload_keeps_running_schedules_and_refuses_a_broken_file(tmp_path):
    port, metrics_port = free_udp_port(), free_udp_port()
    config = tmp_path / "agent.yaml"
    write_config(config, port, metrics_port, "video")
    agent = Agent(load_plan(config), sink=InProcessSink(queue.Queue()), clock=shared_host_clock())
    video_session = agent.scheduler._schedules[0].target
    outcomes, probes_at_reload = [], []

    def probes_sent() -> int:
        return agent.scheduler.telemetry.probes_sent

    def edit_and_reload():
        config.write_text("site: [not, a, mapping]\n")
        outcomes.append(agent.reload())
        write_config(config, port, metrics_port, "video, data")
        outcomes.append(agent.reload())
        probes_at_reload.append(probes_sent())

    # Reload once the first plan probes; stop once the reloaded plan has probed too.
    run_until(
        agent.run,
        agent.stop,
        lambda: probes_sent() >= probes_at_reload[0] + 2 * 10,
        during=(lambda: probes_sent() >= 10, edit_and_reload),
    )
    assert outcomes == [False, True]
    slices = {s.probe.slice.name: s for s in agent.scheduler._schedules}
    assert set(slices) == {"video", "data"}
    assert slices["video"].target is video_session  # kept, with its sequence numbers


class _TokenlessAnalyzer(ThreadingHTTPServer):
    """An analyzer restarted without its token file: every shipment gets 403."""

    address_family = socket.AF_INET6
    daemon_threads = True

    def __init__(self) -> None:
        class Refuse(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(403)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        super().__init__(("::1", 0), Refuse)
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()


@pytest.mark.tool("promtool")
def test_a_refused_token_keeps_windows_spooled_and_shows_on_metrics(tmp_path):
    port, metrics_port = free_udp_port(), free_udp_port()
    analyzer = _TokenlessAnalyzer()
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    config = tmp_path / "agent.yaml"
    write_config(config, port, metrics_port, "video")
    with config.open("a") as f:
        f.write(
            f'analyzer: {{url: "http://[::1]:{analyzer.server_address[1]}", token_file: "{token}", '
            f'spool_dir: "{tmp_path / "spool"}"}}\n'
        )
    agent = Agent(load_plan(config), clock=shared_host_clock())
    failures: dict[str, float] = {}
    scraped: list[str] = []

    def refused_twice() -> bool:
        if agent.server is None:
            return False  # not serving /metrics yet
        with urllib.request.urlopen(f"http://[::1]:{metrics_port}/metrics", timeout=DEADLINE_S) as response:
            text = response.read().decode()
        scraped.append(text)
        for family in text_string_to_metric_families(text):
            if family.name == "xnet_collector_ship_failures":
                failures.update({s.labels["reason"]: s.value for s in family.samples if s.labels["src"] == "here"})
        return failures.get("auth", 0) >= 2

    try:
        run_until(agent.run, agent.stop, refused_twice)
    finally:
        analyzer.shutdown()
        analyzer.server_close()
    assert agent.sink is not None
    assert agent.sink.rejected_total == 0 and agent.sink.dropped_total == 0
    assert agent.sink.spool_depth >= 1  # the windows wait for the token to be fixed
    assert failures["rejected"] == 0 and failures["network"] == 0
    # The agent's whole /metrics, as served, is valid for Prometheus' own checker.
    checked = subprocess.run(["promtool", "check", "metrics"], input=scraped[-1], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
