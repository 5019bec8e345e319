"""Long-term metrics: a Prometheus HA pair, built from the generated configuration (a `replica`
external label each, remote write), feeds VictoriaMetrics started with the generated flags, and
every recording rule, alert expression and dashboard query answers the same from
VictoriaMetrics as from one Prometheus over the same data: same label sets, same values.

The data: a fixed extranet (paths losing and slow by slice, agents lagging, silent or spooling,
flows, in-situ segments of marked flows, two analyzer replicas judging alike), every counter
growing linearly in time and every sample on a 15 s grid. 75 minutes of history (reaching a
minute past the start, so the live scrapes continue it without a gap) are backfilled into both
Prometheus servers (promtool's blocks) and imported into VictoriaMetrics under each replica's
label; the live part is scraped by both Prometheus servers (timestamps honoured, so both scrape
the same grid) and remote-written. Expressions are evaluated halfway between grid points, so no
sample sits on a window's edge (Prometheus 2.42 closes ranges on the left, VictoriaMetrics does
not) and a counter's rate is its slope in both: Prometheus extrapolates to the window's edges,
VictoriaMetrics reads from the sample before the window, and on linear data both are exact.

VictoriaMetrics sees both replicas' copies of every series; the expressions merge the `replica`
label before summing or counting (`dashboards.promql`), so it must not count anything twice.

Where VictoriaMetrics answers otherwise, and why (none of it is ours to fix):
- NaN: Prometheus answers NaN for a quantile of an empty histogram (a path that loses every
  probe) and stores NaN recorded samples; VictoriaMetrics neither stores nor returns NaN, so
  the series is missing there. `differences` allows exactly that.
- Off this test's linear data, MetricsQL's `rate`/`increase` do not extrapolate to the window's
  edges (they start from the last sample before the window), so over a window that holds a
  counter's first samples or a change of slope the two differ by up to one scrape's share.
- A quantile that falls exactly on a bucket's edge may land in either bucket (float rounding
  of the rank); the data avoids such shares.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import yaml
from prometheus_client.utils import floatToGoString

from analyzer.sla.verdicts import duration_label
from collector.contract.records import RTT_BUCKETS_S
from dashboards.build import GENERATED_DIR
from dashboards.config import load_config
from dashboards.prometheus import Deployment, example_config
from dashboards.render import to_yaml
from dashboards.victoriametrics import flags_of
from tests.dashboard_support import generated_alerts, panel_queries, runnable
from tests.prometheus_support import (
    _get,
    exposition_server,
    free_tcp_port,
    instant,
    post,
    running_prometheus,
    running_victoria_metrics,
)
from tests.support import wait_until

pytestmark = [pytest.mark.tool("prometheus"), pytest.mark.tool("promtool"), pytest.mark.tool("victoria-metrics")]

STEP_S = 15  # the data's grid, and the scrape interval the mixin is built for
HISTORY_S = 75 * 60  # the longest window (1h) at the first instant, with room
STARTUP_S = 4 * STEP_S  # time to write the history and start the servers, with room for a loaded machine
RATE_INTERVAL = f"{4 * STEP_S}s"  # Grafana's $__rate_interval: four scrape intervals
REPLICAS = ("prometheus-a", "prometheus-b")
INSTANTS = 3  # live grid points judged, halfway to the next
REL_TOLERANCE = 1e-9
# Expressions that may answer nothing on this data in both stores, and why (they must then
# answer nothing in both).
EMPTY_HERE = {
    "XnetAnalyzerDown": "the analyzer job is scraped: absent() has nothing to say",
}

Labels = tuple[tuple[str, str], ...]


# -- the data -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Path:
    src: str
    dst: str
    slice: str
    sent: float  # probes per second
    lost: tuple[float, float, float]  # forward, reverse, unknown: shares of sent
    # (bucket bound, share of replies at or under it); no share is a percentile the panels ask
    # for, so no quantile falls on a bucket's edge, where float rounding picks either bucket.
    rtt: tuple[tuple[float, float], ...]


PATHS = (
    Path("cnty1a", "cnty2b", "video", 10, (1.0, 0, 0), ()),  # everything lost: the slice is down
    Path("cnty1a", "core", "video", 10, (0.002, 0.001, 0), ((0.02, 0.85), (0.05, 0.97), (0.3, 1.0))),
    Path("cnty2b", "core", "egov", 5, (0.01, 0, 0.002), ((0.1, 0.55), (0.3, 0.95), (1.0, 1.0))),
    Path("core", "cnty1a", "data", 2, (0, 0, 0), ((0.01, 1.0),)),
    Path("core", "cnty2b", "best-effort", 1, (0.1, 0.05, 0), ((0.05, 0.6), (0.15, 1.0))),
)
SITES = ("cnty1a", "cnty2b", "core")
ANALYZERS = ("core-a:9863", "core-b:9863")  # two replicas judging alike
STATES = ("ok", "at-risk", "breached", "no-data")
SLICE_STATE = {"video": "breached", "egov": "at-risk", "data": "ok", "best-effort": "no-data"}
BURN = {"video": 20.0, "egov": 7.0, "data": 0.5, "best-effort": 1.5}
POLICIES = load_config().policies
HINTS = (("video", "node-down", "city2b", 0.9), ("egov", "link-loss", "core>prov2", 0.6))


@dataclass(frozen=True)
class Segment:
    slice: str
    name: str  # `a>b` for a link, span or end-to-end, the site for a node
    kind: str
    packets: float  # marked packets per second entering it
    lost: float  # share of them lost; none is a slice's bound, so no alert sits on its edge
    delay_s: float


# In-situ segments of marked flows as the analyzer exports them: video loses over its bound
# (0.1%) on one link, so XnetSegmentLossHigh has something to say; egov's loss stays under.
SEGMENTS = (
    Segment("video", "cnty1a>city1a", "link", 200, 0.0, 0.0012),
    Segment("video", "city1a", "node", 200, 0.0, 0.00003),
    Segment("video", "city1a>core", "link", 200, 0.004, 0.0031),
    Segment("video", "cnty1a>core", "end-to-end", 200, 0.004, 0.00433),
    Segment("egov", "cnty2b>core", "span", 40, 0.002, 0.0052),
    Segment("egov", "cnty2b>core", "end-to-end", 40, 0.002, 0.0052),
)


def _sample(name: str, value: float, **labels: str) -> tuple[str, Labels, float]:
    return name, tuple(sorted(labels.items())), value


def samples_at(t: int, start: int, path_change: int) -> list[tuple[str, Labels, float]]:
    """Every series' value at the grid time `t` (Unix seconds): counters are slope x (t - start)."""
    age = t - start
    out = []
    agent = {"job": "xnet-agent"}
    for path in PATHS:
        key = {**agent, "instance": f"{path.src}:9862", "src": path.src, "dst": path.dst, "slice": path.slice}
        probe = {**key, "probe": "stamp"}
        received = path.sent * (1 - sum(path.lost))
        out.append(_sample("xnet_probe_sent_total", path.sent * age, **probe))
        out.append(_sample("xnet_probe_received_total", received * age, **probe))
        out.append(_sample("xnet_probe_duplicates_total", 0.01 * path.sent * age, **probe))
        out.append(_sample("xnet_probe_reordered_total", 0.02 * path.sent * age, **probe))
        for direction, share in zip(("forward", "reverse", "unknown"), path.lost, strict=True):
            out.append(_sample("xnet_probe_lost_total", share * path.sent * age, **probe, direction=direction))
        for bound in RTT_BUCKETS_S:
            share = max((s for b, s in path.rtt if b <= bound), default=0.0)
            out.append(_sample("xnet_rtt_seconds_bucket", share * received * age, **probe, le=floatToGoString(bound)))
        out.append(_sample("xnet_rtt_seconds_bucket", received * age, **probe, le="+Inf"))
        out.append(_sample("xnet_rtt_seconds_count", received * age, **probe))
        out.append(_sample("xnet_rtt_seconds_sum", 0.03 * received * age, **probe))
        out.append(_sample("xnet_delay_variation_seconds", 0.002, **probe, type="ipdv"))
        out.append(_sample("xnet_delay_variation_seconds", 0.009, **probe, type="pdv_p99"))
        fingerprint = "bbbb" if (path.src, path.dst) == ("cnty1a", "core") and t >= path_change else "aaaa"
        out.append(_sample("xnet_path_info", 1, **probe, address="fd00::2", fingerprint=fingerprint))
    for site in SITES:
        key = {**agent, "instance": f"{site}:9862", "src": site}
        sent = sum(p.sent for p in PATHS if p.src == site)
        silent = site == "cnty2b"
        out.append(_sample("xnet_collector_last_window_timestamp_seconds", start + 600 if silent else t, **key))
        lag = 0.2 if site == "cnty1a" else 0.001
        out.append(_sample("xnet_collector_scheduling_lag_seconds", lag, **key, quantile="0.99"))
        out.append(_sample("xnet_collector_scheduling_lag_seconds", 2 * lag, **key, quantile="1"))
        out.append(_sample("xnet_collector_probes_sent_total", sent * age, **key))
        out.append(_sample("xnet_collector_send_errors_total", (0.1 if site == "cnty1a" else 0) * sent * age, **key))
        out.append(_sample("xnet_collector_receive_errors_total", 0.01 * age, **key))
        out.append(_sample("xnet_collector_socket_drops_total", 0.02 * age, **key))
        out.append(_sample("xnet_collector_cpu_seconds_total", 0.05 * age, **key))
        out.append(_sample("xnet_collector_windows_dropped_total", (0.1 if silent else 0) * age, **key))
        refused = 0.05 if site == "cnty1a" else 0  # cnty1a's token is refused: its windows wait
        out.append(_sample("xnet_collector_ship_failures_total", refused * age, **key, reason="auth"))
        out.append(_sample("xnet_collector_sessions", 4, **key))
        out.append(_sample("xnet_collector_spool_windows", 20 + 0.05 * age if silent else 0, **key))
        out.append(_sample("xnet_reflector_packets_total", 3 * age, **key, result="reflected"))
        out.append(
            _sample(
                "xnet_malformed_packets_total",
                (1 if site == "cnty1a" else 0) * age,
                **key,
                protocol="stamp",
                kind="short",
            )
        )
        out.append(
            _sample("xnet_build_info", 1, job="xnet-agent", instance=key["instance"], version="1.0", python="3.11")
        )
    flows = {**agent, "instance": "core:9862"}
    for n, slice_name in enumerate(SLICE_STATE, start=1):
        for exporter in ("[fd00::1]:4739", "[fd00::2]:4739"):
            for direction in ("in", "out"):
                key = {**flows, "slice": slice_name, "exporter": exporter, "direction": direction}
                out.append(_sample("xnet_flow_bytes_total", 1000 * n * age, **key))
                out.append(_sample("xnet_flow_packets_total", 10 * n * age, **key))
                out.append(_sample("xnet_flow_records_total", 0.5 * n * age, **key))
        for bound in RTT_BUCKETS_S:
            share = 1.0 if bound >= 0.05 else 0.4 if bound >= 0.01 else 0.0
            le = floatToGoString(bound)
            out.append(_sample("xnet_passive_rtt_seconds_bucket", share * n * age, **flows, slice=slice_name, le=le))
        out.append(_sample("xnet_passive_rtt_seconds_bucket", n * age, **flows, slice=slice_name, le="+Inf"))
        out.append(_sample("xnet_tcp_retransmissions_total", 0.1 * n * age, **flows, slice=slice_name))
    for exporter in ("[fd00::1]:4739", "[fd00::2]:4739"):
        out.append(_sample("xnet_flow_sampling_rate", 100, **flows, exporter=exporter))
        out.append(_sample("xnet_flow_templates", 3, **flows, exporter=exporter))
        out.append(_sample("xnet_flow_datagrams_total", 2 * age, **flows, exporter=exporter, protocol="ipfix"))
    for colour in ("0", "1"):
        out.append(
            _sample("xnet_altmark_packets_total", 50 * age, **flows, point="core", flow_mon_id="7", colour=colour)
        )
    out.append(_sample("xnet_altmark_block_loss_packets_total", 0.5 * age, **flows, segment="cnty1a>core"))
    for instance in ANALYZERS:
        key = {"job": "xnet-analyzer", "instance": instance}
        for slice_name, policy in POLICIES.items():
            for state in STATES:
                out.append(
                    _sample(
                        "xnet_slice_state",
                        float(SLICE_STATE[slice_name] == state),
                        **key,
                        slice=slice_name,
                        state=state,
                    )
                )
            for objective in policy.objectives:
                labels = {**key, "slice": slice_name, "objective": objective.name}
                out.append(_sample("xnet_slice_sla_objective_met", float(slice_name != "video"), **labels))
                out.append(_sample("xnet_slice_sla_objective_observed", objective.bound * 1.2, **labels))
                out.append(_sample("xnet_slice_sla_objective_bound", objective.bound, **labels))
            out.append(
                _sample("xnet_slice_error_budget_remaining_ratio", 1 / BURN[slice_name], **key, slice=slice_name)
            )
            for window in {duration_label(s) for w in policy.burn_windows for s in (w.long_s, w.short_s)}:
                out.append(_sample("xnet_slice_burn_rate", BURN[slice_name], **key, slice=slice_name, window=window))
            out.append(_sample("xnet_slice_state_since_timestamp_seconds", start, **key, slice=slice_name))
        for slice_name, kind, suspect, confidence in HINTS:
            out.append(_sample("xnet_rootcause_hint", confidence, **key, slice=slice_name, kind=kind, suspect=suspect))
        for seg in SEGMENTS:
            labels = {**key, "slice": seg.slice, "segment": seg.name, "kind": seg.kind}
            out.append(_sample("xnet_segment_packets_total", seg.packets * age, **labels))
            out.append(_sample("xnet_segment_lost_packets_total", seg.lost * seg.packets * age, **labels))
            out.append(_sample("xnet_segment_blocks_total", age / 10, **labels))  # 10 s blocks
            out.append(_sample("xnet_segment_delay_seconds", seg.delay_s, **labels))
        out.append(_sample("xnet_analyzer_windows_ingested_total", 50 * age, **key))
        out.append(_sample("xnet_analyzer_windows_duplicate_total", 1 * age, **key))
        out.append(_sample("xnet_analyzer_batches_rejected_total", 0.1 * age, **key))
        cut_off = instance == ANALYZERS[1]  # the second replica has lost the bus: its alert fires
        out.append(_sample("xnet_analyzer_bus_connected", float(not cut_off), **key))
        out.append(_sample("xnet_analyzer_bus_disconnections_total", (0.01 if cut_off else 0) * age, **key))
        out.append(_sample("xnet_build_info", 1, **key, version="1.0", python="3.11"))
    return out


def _line(name: str, labels: Labels, value: float, timestamp: str) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in labels)
    return f"{name}{{{inner}}} {value!r} {timestamp}"


@dataclass(frozen=True)
class Timeline:
    start: int  # the first grid point of the history
    end: int  # the last grid point of the history: live scrapes take over after it
    path_change: int  # when cnty1a→core's hop list changes (within the path-changed alert's 15m)

    def grid(self) -> range:
        return range(self.start, self.end + 1, STEP_S)

    def samples(self, t: int) -> list[tuple[str, Labels, float]]:
        return samples_at(t, self.start, self.path_change)

    def exposition(self, t: int) -> str:
        """Prometheus' text format at grid time `t`, with timestamps (milliseconds)."""
        return "".join(_line(*s, str(t * 1000)) + "\n" for s in self.samples(t))

    def history(self) -> tuple[str, str]:
        """The whole history twice: in OpenMetrics, promtool's backfill input (each series'
        samples in time order, series of one name together), and in Prometheus' text format
        for VictoriaMetrics' import."""
        by_series: dict[tuple[str, Labels], list[str]] = {}
        text = []
        for t in self.grid():
            for name, labels, value in self.samples(t):
                by_series.setdefault((name, labels), []).append(_line(name, labels, value, str(t)))
                text.append(_line(name, labels, value, str(t * 1000)))
        openmetrics = "".join(line + "\n" for key in sorted(by_series) for line in by_series[key]) + "# EOF\n"
        return openmetrics, "\n".join(text) + "\n"


def live(timeline: Timeline) -> str:
    """What the exposition server answers now: the current grid point's values. The history's
    last point, served until the grid moves on, is refused by Prometheus as older than its
    blocks: it is stored once, from the backfill."""
    t = max(timeline.end, int(time.time()) // STEP_S * STEP_S)
    return timeline.exposition(t)


# -- the stores -----------------------------------------------------------------------------


def prometheus_config(replica: str, fixture: str, analyzer: str, dead_agent: str, vm: str) -> str:
    """The generated configuration for one replica: its agents, analyzer and remote write
    pointed at this test's servers, scraping every second (the data stays on its 15 s grid),
    plus the fixture job that carries the data with its own job and instance labels."""
    deployment = Deployment(
        replica=replica,
        agents=(dead_agent,),  # up == 0: the agent-down alert has something to say
        analyzers=(analyzer,),
        rule_dir=str(GENERATED_DIR),
        alertmanagers=(),
        remote_write_url=f"{vm}/api/v1/write",
    )
    config = example_config(load_config(), deployment)
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["scrape_configs"].append(
        {"job_name": "fixture", "honor_labels": True, "static_configs": [{"targets": [fixture]}]}
    )
    return to_yaml(config)


def backfill(tmp_path, openmetrics: str) -> None:
    """The history as TSDB blocks in each replica's data directory."""
    source = tmp_path / "history.om"
    source.write_text(openmetrics)
    blocks = tmp_path / "blocks"
    done = subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", str(source), str(blocks)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for replica in REPLICAS:
        shutil.copytree(blocks, tmp_path / replica / "tsdb")


@contextlib.contextmanager
def the_pair_and_the_store(tmp_path, timeline: Timeline) -> Iterator[tuple[str, str]]:
    """VictoriaMetrics with the generated flags and the history of both replicas, the
    exposition servers, and the Prometheus pair; yields (Prometheus a's URL, VictoriaMetrics' URL)."""
    flags = flags_of((GENERATED_DIR / "victoria-metrics.default").read_text())
    flags = [f for f in flags if not f.startswith(("-storageDataPath=", "-httpListenAddr="))]
    openmetrics, text = timeline.history()
    backfill(tmp_path, openmetrics)
    with contextlib.ExitStack() as stack:
        vm = stack.enter_context(running_victoria_metrics(tmp_path, flags))
        for replica in REPLICAS:
            assert post(f"{vm}/api/v1/import/prometheus?extra_label=replica={replica}", text.encode()) == 204
        fixture = stack.enter_context(exposition_server(lambda: live(timeline)))
        analyzer = stack.enter_context(exposition_server(lambda: ""))
        dead_agent = f"127.0.0.1:{free_tcp_port('127.0.0.1')}"
        urls = []
        for replica in REPLICAS:
            (tmp_path / replica).mkdir(exist_ok=True)
            text = prometheus_config(replica, fixture, analyzer, dead_agent, vm)
            urls.append(stack.enter_context(running_prometheus(tmp_path / replica, config_text=text)))
        yield urls[0], vm


def vm_instant(vm: str, promql: str, at: float) -> dict[Labels, float]:
    # nocache: answer from the raw data, also for instants within -search.latencyOffset of now.
    return instant(vm, promql, at=at, nocache="1")


def wait_until_both_hold(prometheus: str, vm: str, at: float) -> None:
    """Until VictoriaMetrics holds, from each replica, as many series with a sample in the step
    before `at` as Prometheus a (raw and recorded series, remote-written). Alert states change
    on each replica's own evaluation clock: they are left out."""
    fresh = '{__name__=~".+", __name__!~"ALERTS.*"}'
    wait_until(lambda: time.time() > at + 1, at + STEP_S - time.time(), interval=0.25, what=f"the clock past {at}")
    # last_over_time keeps each series' name (count_over_time would collapse them in Prometheus);
    # NaN samples (a quantile of no replies) are left out: VictoriaMetrics does not store them.
    [(_, expected)] = instant(prometheus, f"count(last_over_time({fresh}[{STEP_S}s]) >= -Inf)", at=at).items()
    last: dict = {}

    def arrived() -> bool:
        nonlocal last
        last = written_by_replica(vm, fresh, at - STEP_S, at)
        return last == {r: expected for r in REPLICAS}

    wait_until(arrived, interval=0.5, what=lambda: f"{expected:g} series of each replica in VictoriaMetrics; {last}")


def written_by_replica(vm: str, selector: str, since: float, until: float) -> dict[str, int]:
    """How many series of each replica VictoriaMetrics holds samples of between the two times."""
    params = urllib.parse.urlencode({"match[]": selector, "start": f"{since:.3f}", "end": f"{until:.3f}"})
    counts: dict[str, int] = {}
    for line in _get(f"{vm}/api/v1/export?{params}", None, parse=False).splitlines():
        series = json.loads(line)
        if series["timestamps"]:
            replica = series["metric"].get("replica", "")
            counts[replica] = counts.get(replica, 0) + 1
    return counts


# -- the comparison -------------------------------------------------------------------------


def expressions() -> list[tuple[str, str]]:
    rules = yaml.safe_load((GENERATED_DIR / "rules.yml").read_text())["groups"]
    found = [(f"rule {r['record']}", r["expr"]) for g in rules for r in g["rules"]]
    found += [(f"alert {a['alert']}", a["expr"]) for a in generated_alerts()]
    found += [(f"{uid} / {title}", runnable(expr, RATE_INTERVAL)) for uid, title, expr in panel_queries()]
    return found


def same(a: float, b: float) -> bool:
    return a == b or math.isclose(a, b, rel_tol=REL_TOLERANCE)


def differences(prom: dict[Labels, float], vm: dict[Labels, float]) -> list[str]:
    """What VictoriaMetrics answers otherwise. One difference is known and allowed: where
    Prometheus answers NaN (a quantile of a histogram with no replies in the window, on a path
    that loses everything) VictoriaMetrics leaves the series out, as it neither stores nor
    returns NaN; a dashboard shows no value either way."""
    prom = {labels: value for labels, value in prom.items() if not math.isnan(value)}
    if set(prom) != set(vm):
        only_prom, only_vm = sorted(set(prom) - set(vm)), sorted(set(vm) - set(prom))
        return [f"labels only in Prometheus: {only_prom}, only in VictoriaMetrics: {only_vm}"]
    return [f"{dict(k)}: {prom[k]!r} != {vm[k]!r}" for k in prom if not same(prom[k], vm[k])]


def test_every_rule_alert_and_panel_answers_the_same_from_victoria_metrics_as_from_prometheus(tmp_path):
    assert load_config().scrape_interval_s == STEP_S  # the committed mixin's fast window fits the grid
    grid_now = int(time.time()) // STEP_S * STEP_S
    # The history reaches past the servers' start, so the live scrapes continue it without a
    # gap (at a gap wider than a step Prometheus stops extrapolating a rate to the window's edge).
    end = grid_now + STARTUP_S
    timeline = Timeline(start=end - HISTORY_S, end=end, path_change=end - 8 * 60)
    with the_pair_and_the_store(tmp_path, timeline) as (prometheus, vm):
        # The first grid point both replicas scrape; a start slower than STARTUP_S leaves a gap.
        first_live = max(int(time.time()) // STEP_S + 1, end // STEP_S + 1) * STEP_S
        assert first_live == end + STEP_S, f"the servers took over {STARTUP_S} s to start"
        found = expressions()
        answered: set[str] = set()
        unequal: list[str] = []
        for n in range(1, INSTANTS + 1):
            at = first_live + (n - 1) * STEP_S + STEP_S / 2  # halfway between live grid points
            wait_until_both_hold(prometheus, vm, at)
            for where, expr in found:
                prom, vmr = instant(prometheus, expr, at=at), vm_instant(vm, expr, at)
                if prom:
                    answered.add(where)
                unequal += [f"{where} at +{n}: {d}\n  {expr}" for d in differences(prom, vmr)]
        # Two analyzers judge alike: the hints table shows each hint once, from either store.
        hints = runnable(next(e for _, title, e in panel_queries() if title == "Active root-cause hints"))
        assert len(instant(prometheus, hints, at=at)) == len(vm_instant(vm, hints, at)) == len(HINTS)
        # The store does hold both replicas: a sum that does not merge them counts twice.
        unmerged = "sum by (slice) (rate(xnet_probe_sent_total[5m]))"
        doubled = {k: 2 * v for k, v in instant(prometheus, unmerged, at=at).items()}
        assert differences(doubled, vm_instant(vm, unmerged, at)) == []
    assert unequal == [], "\n".join(unequal)
    silent = sorted({where for where, _ in found} - answered)
    assert all(any(name in where for name in EMPTY_HERE) for where in silent), f"no data from: {silent}"
    print(f"\n{len(found)} expressions at {INSTANTS} instants: the same answers; empty in both: {silent}")
