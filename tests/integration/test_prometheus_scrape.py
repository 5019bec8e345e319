"""A real Prometheus (the Debian package) scrapes the agent's /metrics, and PromQL reads
back the numbers that went in: the loss ratio by slice the recording rules will compute,
counters by direction, RTT quantiles from the histogram, and the stalled-agent signal."""

from __future__ import annotations

import time

import pytest

from collector.contract.examples import example_window
from collector.contract.records import RTT_BUCKETS_S, PathKey, PathWindow
from collector.outputs.prometheus.agent import serve_metrics
from collector.outputs.prometheus.state import MetricsState
from tests.prometheus_support import query, running_prometheus, wait_for

pytestmark = pytest.mark.tool("prometheus")

WINDOW_NS = 1_000_000_000
VIDEO = PathKey("bj-core", "sh-core", "video", "stamp")
EGOV = PathKey("bj-core", "sh-core", "egov", "stamp")


def buckets(**by_bound: int) -> tuple[int, ...]:
    """Non-cumulative bucket counts from {"b0_02": 90, ...} keyed by upper bound."""
    counts = [0] * (len(RTT_BUCKETS_S) + 1)
    for name, count in by_bound.items():
        counts[RTT_BUCKETS_S.index(float(name[1:].replace("_", ".")))] = count
    return tuple(counts)


def window(key: PathKey, seq: int, end_ns: int, *, lost_forward: int, lost_reverse: int) -> PathWindow:
    """100 probes; the replies land 90 in (10 ms, 20 ms] and the rest in (30 ms, 50 ms]."""
    received = 100 - lost_forward - lost_reverse
    return example_window(
        key,
        seq,
        start_ns=end_ns - WINDOW_NS,
        end_ns=end_ns,
        target_address="fd00:1::2",
        sent=100,
        received=received,
        lost_forward=lost_forward,
        lost_reverse=lost_reverse,
        lost_unknown=0,
        rtt_buckets=buckets(b0_02=90, b0_05=received - 90),
        rtt_sum_ns=90 * 15_000_000 + (received - 90) * 40_000_000,
    )


def apply_round(state: MetricsState, seq: int) -> None:
    end = time.time_ns()
    state.apply(
        [
            window(VIDEO, seq, end, lost_forward=3, lost_reverse=2),  # 5 % loss, 3 of it forward
            window(EGOV, seq, end, lost_forward=0, lost_reverse=0),
        ]
    )


def test_prometheus_scrapes_the_agent_and_promql_reads_back_the_numbers(tmp_path):
    state = MetricsState()
    apply_round(state, 1)
    with serve_metrics(state, ("::1", 0)) as server, running_prometheus(tmp_path, f"[::1]:{server.address[1]}") as prom:
        wait_for(prom, 'up{job="xnet-agent"}', lambda r: list(r.values()) == [1.0])
        rounds = 4
        for seq in range(1, rounds + 1):  # counters that grow between scrapes, for rate(): each round scraped
            if seq > 1:
                apply_round(state, seq)
            wait_for(prom, 'xnet_probe_sent_total{slice="video"}', lambda r, seq=seq: list(r.values()) == [100.0 * seq])

        # The loss ratio by slice, as the recording rules derive it from the counters.
        ratio = query(
            prom, "sum by (slice) (rate(xnet_probe_lost_total[1m])) / sum by (slice) (rate(xnet_probe_sent_total[1m]))"
        )
        assert ratio[("video",)] == pytest.approx(0.05) and ratio[("egov",)] == 0

        lost = query(prom, 'sum by (direction) (xnet_probe_lost_total{slice="video"})')
        assert lost == {("forward",): 3.0 * rounds, ("reverse",): 2.0 * rounds, ("unknown",): 0.0}

        # 95 replies a round: 90 in (10 ms, 20 ms], 5 in (30 ms, 50 ms]; linear interpolation
        # inside the bucket gives p50 = 10 + 10 * 47.5/90 ms and p99 = 30 + 20 * 4.05/5 ms.
        rtt = 'sum by (le) (xnet_rtt_seconds_bucket{slice="video"})'
        p50 = query(prom, f"histogram_quantile(0.5, {rtt})")[()]
        p99 = query(prom, f"histogram_quantile(0.99, {rtt})")[()]
        assert p50 == pytest.approx(0.01 + 0.01 * 47.5 / 90) and p99 == pytest.approx(0.0462)
        mean = query(prom, 'xnet_rtt_seconds_sum{slice="video"} / xnet_rtt_seconds_count{slice="video"}')
        assert list(mean.values()) == [pytest.approx((90 * 0.015 + 5 * 0.040) / 95)]

        info = query(prom, 'xnet_path_info{slice="video"}')
        assert len(info) == 1 and "fd00:1::2" in next(iter(info))
        # The stalled-agent signal: seconds since the newest window ended.
        age = query(prom, "time() - xnet_collector_last_window_timestamp_seconds")
        assert 0 <= next(iter(age.values())) < 10
