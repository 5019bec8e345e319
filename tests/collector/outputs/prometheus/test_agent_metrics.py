"""MetricsState and the agent's /metrics: folding windows into counters, the histogram,
the per-path series budget, label escaping, stale paths, and snapshots under concurrency."""

from __future__ import annotations

import dataclasses
import gzip
import socket
import subprocess
import threading
import urllib.request
from types import MappingProxyType

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from collector.contract.examples import example_window
from collector.contract.records import RTT_BUCKETS_S, CollectorHealth, PathKey, PathWindow
from collector.outputs.prometheus.agent import SERIES_PER_PATH, AgentCollector, agent_registry, serve_metrics
from collector.outputs.prometheus.state import MetricsState, OnDemandCounters, ReflectorCounters
from collector.reflector.session_reflector import ReflectorStats

S = 1_000_000_000  # ns per second
T0 = 1_800_000_000 * S  # a window-aligned wall-clock time
KEY = PathKey("bj-core", "sh-core", "video", "stamp")


def window(key: PathKey = KEY, seq: int = 1, **fields) -> PathWindow:
    """A 10 s window ending at T0 + seq * 10 s: 10 sent, 8 back, 1 lost forward, 1 unknown."""
    start = T0 + (seq - 1) * 10 * S
    values = dict(
        start_ns=start,
        end_ns=start + 10 * S,
        target_address="fd00:1::2",
        sent=10,
        received=8,
        lost_forward=1,
        lost_reverse=0,
        lost_unknown=1,
        duplicates=1,
        reordered=2,
        # 8 replies: 2 under 0.5 ms, 3 in (1 ms, 2 ms], 2 in (10 ms, 20 ms], 1 above 1 s
        rtt_buckets=(2, 0, 3, 0, 0, 2, 0, 0, 0, 0, 0, 0, 1),
        rtt_sum_ns=1_031_250_000,
        path_fingerprint="0123456789abcdef",
    )
    return example_window(key, seq, **(values | fields))


def health(site: str = "bj-core", **fields) -> CollectorHealth:
    values = dict(
        site=site,
        observed_ns=T0,
        scheduling_lag_p99_ns=250_000,
        scheduling_lag_max_ns=4_000_000,
        probes_sent_total=1200,
        send_errors_total=3,
        receive_errors_total=1,
        socket_drops_total=7,
        cpu_seconds_total=12.5,
        sessions=40,
        windows_dropped_total=2,
        spool_depth=5,
    )
    values.update(fields)
    return CollectorHealth(**values)


def registry_of(state: MetricsState):
    return agent_registry(state, process_metrics=False)


def value(state: MetricsState, name: str, **labels) -> float | None:
    return registry_of(state).get_sample_value(name, labels)


def path_labels(key: PathKey = KEY) -> dict[str, str]:
    return {"src": key.source, "dst": key.target, "slice": key.slice, "probe": key.kind}


def samples(state: MetricsState):
    text = generate_latest(registry_of(state)).decode()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def test_windows_fold_into_counters():
    state = MetricsState()
    state.apply([window(seq=1)])
    state.apply(
        [window(seq=2, sent=20, received=17, lost_forward=0, lost_reverse=3, lost_unknown=0, duplicates=0, reordered=1)]
    )
    p = path_labels()
    assert value(state, "xnet_probe_sent_total", **p) == 30
    assert value(state, "xnet_probe_received_total", **p) == 25
    assert value(state, "xnet_probe_lost_total", **p, direction="forward") == 1
    assert value(state, "xnet_probe_lost_total", **p, direction="reverse") == 3
    assert value(state, "xnet_probe_lost_total", **p, direction="unknown") == 1
    assert value(state, "xnet_probe_duplicates_total", **p) == 1
    assert value(state, "xnet_probe_reordered_total", **p) == 3


def test_a_repeated_window_is_not_counted_twice():
    state = MetricsState()
    state.apply([window(seq=1), window(seq=1)])
    state.apply([window(seq=1)])
    assert value(state, "xnet_probe_sent_total", **path_labels()) == 10


def test_rtt_histogram_is_cumulative_on_the_contract_bounds():
    state = MetricsState()
    state.apply([window(seq=1), window(seq=2)])
    p = path_labels()
    buckets = [
        (s.labels["le"], s.value)
        for s in samples(state)
        if s.name == "xnet_rtt_seconds_bucket" and s.labels["dst"] == KEY.target
    ]
    assert [float(le) for le, _ in buckets] == [*RTT_BUCKETS_S, float("inf")]
    # per window (2, 0, 3, 0, 0, 2, 0 ... 0, 1), two windows, cumulated over the bounds
    assert [v for _, v in buckets] == [4, 4, 10, 10, 10, 14, 14, 14, 14, 14, 14, 14, 16]
    assert value(state, "xnet_rtt_seconds_count", **p) == 16 == value(state, "xnet_probe_received_total", **p)
    assert value(state, "xnet_rtt_seconds_sum", **p) == pytest.approx(2.0625)
    assert value(state, "xnet_rtt_seconds_bucket", **p, le="0.02") == 14  # 20 ms: an SLA bound


def test_delay_variation_comes_from_the_latest_window_and_is_absent_without_replies():
    state = MetricsState()
    state.apply([window(seq=1)])
    state.apply([window(seq=2, ipdv_mean_abs_ns=1_000_000, pdv_p99_ns=None)])
    p = path_labels()
    assert value(state, "xnet_delay_variation_seconds", **p, type="ipdv") == 0.001
    assert value(state, "xnet_delay_variation_seconds", **p, type="pdv_p99") is None


def test_each_path_carries_exactly_the_series_budget():
    keys = [KEY, PathKey("bj-core", "gz-core", "egov", "icmp"), PathKey("sh-core", "bj-core", "video", "stamp")]
    state = MetricsState()
    state.apply([window(key) for key in keys])
    state.set_health(health())
    state.set_reflector(ReflectorCounters(reflected=5))
    every = samples(state)
    for key in keys:
        mine = [s for s in every if {k: s.labels.get(k) for k in ("src", "dst", "slice", "probe")} == path_labels(key)]
        assert len(mine) == SERIES_PER_PATH == 25
    assert sum("dst" in s.labels for s in every) == 25 * len(keys)


def test_path_info_holds_the_address_and_fingerprint_and_nothing_else_does():
    state = MetricsState()
    state.apply([window(seq=1)])
    state.apply([window(seq=2, path_fingerprint=None)])  # no new trace
    info = [s for s in samples(state) if s.name == "xnet_path_info"]
    assert len(info) == 1 and info[0].value == 1
    assert info[0].labels["address"] == "fd00:1::2" and info[0].labels["fingerprint"] == "0123456789abcdef"
    assert all("address" not in s.labels for s in samples(state) if s.name != "xnet_path_info")


def test_label_values_are_escaped_and_read_back_intact():
    awkward = PathKey('site "a"', "back\\slash\nnewline", "video", "stamp")
    state = MetricsState()
    state.apply([window(awkward)])
    text = generate_latest(registry_of(state)).decode()
    assert 'src="site \\"a\\""' in text and 'dst="back\\\\slash\\nnewline"' in text
    sent = [s for s in samples(state) if s.name == "xnet_probe_sent_total"]
    assert sent[0].labels["src"] == 'site "a"' and sent[0].labels["dst"] == "back\\slash\nnewline"


def test_paths_that_stop_reporting_leave_after_three_windows():
    gone = PathKey("bj-core", "removed-target", "video", "stamp")
    state = MetricsState(stale_after_windows=3)
    state.apply([window(KEY, 1), window(gone, 1)])
    state.apply([window(KEY, 4)])  # 3 windows after `gone` last ended: kept
    assert gone in state.snapshot.paths
    state.apply([window(KEY, 5)])
    assert gone not in state.snapshot.paths and KEY in state.snapshot.paths
    assert all(s.labels.get("dst") != "removed-target" for s in samples(state))
    state.apply([window(gone, 9)])  # back again: counters start over
    assert value(state, "xnet_probe_sent_total", **path_labels(gone)) == 10


def test_collector_health_and_last_window_time():
    state = MetricsState()
    state.apply([window(seq=1)])
    state.set_health(health())
    site = {"src": "bj-core"}
    assert value(state, "xnet_collector_last_window_timestamp_seconds", **site) == (T0 + 10 * S) / 1e9
    assert value(state, "xnet_collector_scheduling_lag_seconds", **site, quantile="0.99") == 0.00025
    assert value(state, "xnet_collector_scheduling_lag_seconds", **site, quantile="1") == 0.004
    assert value(state, "xnet_collector_probes_sent_total", **site) == 1200
    assert value(state, "xnet_collector_send_errors_total", **site) == 3
    assert value(state, "xnet_collector_receive_errors_total", **site) == 1
    assert value(state, "xnet_collector_socket_drops_total", **site) == 7
    assert value(state, "xnet_collector_cpu_seconds_total", **site) == 12.5
    assert value(state, "xnet_collector_sessions", **site) == 40
    assert value(state, "xnet_collector_windows_dropped_total", **site) == 2
    assert value(state, "xnet_collector_spool_windows", **site) == 5


def test_ship_failures_are_copied_when_set_and_shown_by_reason():
    state = MetricsState()
    assert value(state, "xnet_collector_ship_failures_total", src="bj-core", reason="auth") is None
    failures = {"auth": 3, "rejected": 0, "unavailable": 1, "network": 2}
    state.set_ship_failures("bj-core", failures)
    failures["auth"] += 100  # later changes show only at the next set_ship_failures
    assert value(state, "xnet_collector_ship_failures_total", src="bj-core", reason="auth") == 3
    assert value(state, "xnet_collector_ship_failures_total", src="bj-core", reason="rejected") == 0
    assert value(state, "xnet_collector_ship_failures_total", src="bj-core", reason="network") == 2


def test_in_situ_blocks_the_sink_dropped_are_shown_per_site():
    state = MetricsState()
    assert value(state, "xnet_collector_marked_blocks_dropped_total", src="bj-core") is None  # no sink
    state.set_marked_blocks_dropped("bj-core", 0)
    assert value(state, "xnet_collector_marked_blocks_dropped_total", src="bj-core") == 0
    state.set_marked_blocks_dropped("bj-core", 12)
    assert value(state, "xnet_collector_marked_blocks_dropped_total", src="bj-core") == 12


def test_errors_the_loops_survived_are_shown_by_component():
    state = MetricsState()
    assert value(state, "xnet_collector_errors_total", src="bj-core", component="ship") is None
    errors = {"discovery": 2, "spool": 0, "ship": 1}
    state.set_errors("bj-core", errors)
    errors["ship"] += 100  # later changes show only at the next set_errors
    assert value(state, "xnet_collector_errors_total", src="bj-core", component="ship") == 1
    assert value(state, "xnet_collector_errors_total", src="bj-core", component="discovery") == 2


def test_reflector_counters_are_copied_when_set():
    stats = ReflectorStats(received=20, reflected=14, refused_not_allowed=2, refused_rate_limited=1, send_errors=1)
    stats.refused_global_rate_limited, stats.refused_replay, stats.refused_stale = 3, 4, 5
    stats.malformed["short"] += 1
    stats.malformed["bad-hmac"] += 1
    state = MetricsState()
    state.set_reflector(stats)
    stats.reflected += 100  # later changes show only at the next set_reflector
    assert value(state, "xnet_reflector_packets_total", result="reflected") == 14
    assert value(state, "xnet_reflector_packets_total", result="refused_not_allowed") == 2
    assert value(state, "xnet_reflector_packets_total", result="refused_rate_limited") == 1
    assert value(state, "xnet_reflector_packets_total", result="send_error") == 1
    assert value(state, "xnet_reflector_packets_total", result="refused_global_rate_limited") == 3
    assert value(state, "xnet_reflector_packets_total", result="refused_replay") == 4
    assert value(state, "xnet_reflector_packets_total", result="refused_stale") == 5
    assert value(state, "xnet_malformed_packets_total", protocol="stamp", kind="short") == 1
    assert value(state, "xnet_malformed_packets_total", protocol="stamp", kind="bad-hmac") == 1


def test_every_metric_is_documented_and_named_by_the_conventions():
    state = MetricsState()
    state.apply([window()])
    state.set_health(health())
    state.set_reflector(ReflectorCounters())
    families = list(AgentCollector(state).collect())
    names = {f.name for f in families}
    assert {
        "xnet_build_info",
        "xnet_probe_sent",
        "xnet_rtt_seconds",
        "xnet_path_info",
        "xnet_collector_last_window_timestamp_seconds",
        "xnet_reflector_packets",
    } <= names
    for family in families:
        assert family.name.startswith("xnet_") and len(family.documentation) > 20, family.name
    text = generate_latest(registry_of(state)).decode()
    counters = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE") and line.endswith("counter")]
    assert counters and all(name.endswith("_total") for name in counters)
    build = [s for s in samples(state) if s.name == "xnet_build_info"]
    assert build[0].value == 1 and build[0].labels["python"].count(".") == 2


def test_snapshots_stay_whole_and_unchanged_while_windows_are_applied():
    keys = [PathKey("bj-core", f"t{i}", "video", "stamp") for i in range(20)]
    state = MetricsState()
    rounds = 200
    failures: list[str] = []
    stop = threading.Event()

    def writer() -> None:
        for seq in range(1, rounds + 1):
            state.apply([window(key, seq) for key in keys])
        stop.set()

    def reader() -> None:
        while not stop.is_set():
            snapshot = state.snapshot
            before = dict(snapshot.paths)
            sent = {t.sent for t in snapshot.paths.values()}
            if len(sent) > 1:  # every batch touches every path: a torn snapshot mixes rounds
                failures.append(f"torn snapshot: {sorted(sent)}")
            for totals in snapshot.paths.values():
                if totals.sent != totals.received + totals.lost_forward + totals.lost_reverse + totals.lost_unknown:
                    failures.append(f"inconsistent totals {totals}")
            list(AgentCollector(state).collect())  # rendering concurrently must not disturb anything
            if dict(snapshot.paths) != before:
                failures.append("a published snapshot changed")

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures, failures[:3]
    final = state.snapshot
    assert all(t.sent == 10 * rounds for t in final.paths.values()) and len(final.paths) == len(keys)
    with pytest.raises(TypeError):
        final.paths[KEY] = None  # read-only mapping
    with pytest.raises(dataclasses.FrozenInstanceError):
        final.paths[keys[0]].sent = 0


@pytest.mark.tool("promtool")
def test_the_whole_agent_exposition_passes_promtool_check_metrics():
    state = MetricsState()
    state.apply([window()])
    state.set_health(health())
    state.set_reflector(ReflectorCounters())
    state.set_ship_failures("bj-core", {"auth": 1, "rejected": 0, "unavailable": 0, "network": 2})
    text = generate_latest(agent_registry(state)).decode()  # with the process_* families
    assert "xnet_collector_scheduling_lag_seconds" in text and "xnet_collector_ship_failures_total" in text
    checked = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_serve_metrics_on_ipv6_loopback_and_stop():
    state = MetricsState()
    state.apply([window()])
    server = serve_metrics(state, ("[::1]", 0))
    try:
        host, port = server.address
        assert host == "::1" and server.url == f"http://[::1]:{port}/metrics"
        body = urllib.request.urlopen(server.url, timeout=5).read().decode()
        assert 'xnet_probe_sent_total{dst="sh-core",probe="stamp",slice="video",src="bj-core"} 10.0' in body
        assert "process_resident_memory_bytes" in body
    finally:
        server.stop()
    with pytest.raises(OSError), socket.create_connection(("::1", port), timeout=1):
        pass


def test_served_metrics_are_generate_latests_text_plain_gzipped_or_filtered():
    state = MetricsState()
    state.apply([window(), window(PathKey("bj-core", "gz-core", "egov", "icmp"))])
    state.set_health(health())
    with serve_metrics(state, ("::1", 0), process_metrics=False) as server:
        expected = generate_latest(registry_of(state))
        with urllib.request.urlopen(server.url, timeout=5) as plain:
            assert plain.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
            assert plain.read() == expected
        # What Prometheus asks for: OpenMetrics preferred, the text format accepted, gzip.
        request = urllib.request.Request(
            server.url,
            headers={
                "Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                "Accept-Encoding": "gzip",
            },
        )
        with urllib.request.urlopen(request, timeout=5) as zipped:
            assert zipped.headers["Content-Encoding"] == "gzip"
            assert gzip.decompress(zipped.read()) == expected
        # A name filter is prometheus_client's to answer, as before.
        with urllib.request.urlopen(server.url + "?name[]=xnet_build_info", timeout=5) as filtered:
            assert filtered.read() == generate_latest(registry_of(state).restricted_registry(["xnet_build_info"]))


def test_on_demand_counters_show_by_kind_and_outcome_once_set():
    state = MetricsState()
    assert value(state, "xnet_agent_on_demand_in_flight") is None  # an agent that answers no requests
    state.set_on_demand(
        OnDemandCounters(MappingProxyType({("icmp", "cancelled"): 2, ("trace", "refused_busy"): 1}), 3, 4)
    )
    assert value(state, "xnet_agent_on_demand_requests_total", kind="icmp", outcome="cancelled") == 2
    assert value(state, "xnet_agent_on_demand_requests_total", kind="trace", outcome="refused_busy") == 1
    assert value(state, "xnet_agent_on_demand_in_flight") == 3
    assert value(state, "xnet_agent_on_demand_errors_total") == 4
