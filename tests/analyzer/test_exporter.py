"""The analyzer's metrics rendered from verdicts, checked through the text format."""

from __future__ import annotations

import math

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from analyzer.exporter import AnalyzerSnapshot, BusLink, analyzer_registry
from analyzer.rootcause.hints import Hint
from analyzer.sla.verdicts import ObjectiveVerdict, SlaVerdict


def verdict(slice_name: str, status: str, **extra) -> SlaVerdict:
    objectives = (
        ObjectiveVerdict("two-way-delay-percentile", 0.15, 99.0, 0.020, True),
        ObjectiveVerdict("two-way-packet-loss", 0.001, None, 0.03, False),
        ObjectiveVerdict("one-way-delay-percentile", 0.05, 99.0, None, None),
    )
    return SlaVerdict(
        slice_name,
        None,
        status,
        objectives,
        0.25,
        (("5m", 20.0), ("1h", 15.5)),
        1_700_000_000_000_000_000,
        1_700_000_100_000_000_000,
        42,
        **extra,
    )


def samples(snapshot: AnalyzerSnapshot) -> dict[tuple, float]:
    text = generate_latest(analyzer_registry(lambda: snapshot)).decode()
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def test_slice_state_is_one_hot_over_the_four_states():
    got = samples(AnalyzerSnapshot(verdicts=[verdict("video", "breached"), verdict("egov", "ok")]))
    video = {
        state: got[("xnet_slice_state", (("slice", "video"), ("state", state)))]
        for state in ("ok", "at-risk", "breached", "no-data")
    }
    assert video == {"ok": 0.0, "at-risk": 0.0, "breached": 1.0, "no-data": 0.0}
    assert got[("xnet_slice_state", (("slice", "egov"), ("state", "ok")))] == 1.0


def test_objectives_budget_and_burn_rates():
    got = samples(AnalyzerSnapshot(verdicts=[verdict("video", "breached")]))
    loss = (("objective", "two-way-packet-loss"), ("slice", "video"))
    assert got[("xnet_slice_sla_objective_met", loss)] == 0.0
    assert got[("xnet_slice_sla_objective_observed", loss)] == 0.03
    assert got[("xnet_slice_sla_objective_bound", loss)] == 0.001
    one_way = (("objective", "one-way-delay-percentile"), ("slice", "video"))
    assert ("xnet_slice_sla_objective_met", one_way) not in got  # not judged: absent, not 0
    assert got[("xnet_slice_error_budget_remaining_ratio", (("slice", "video"),))] == 0.25
    assert got[("xnet_slice_burn_rate", (("slice", "video"), ("window", "1h")))] == 15.5
    assert got[("xnet_slice_state_since_timestamp_seconds", (("slice", "video"),))] == 1_700_000_000.0


def test_delay_above_the_largest_bucket_is_plus_infinity():
    v = verdict("data", "breached")
    objectives = (ObjectiveVerdict("two-way-delay-percentile", 1.0, 99.0, math.inf, False),)
    v = SlaVerdict(v.slice, None, v.status, objectives, 0.0, (), v.since_ns, v.evaluated_ns, 1)
    got = samples(AnalyzerSnapshot(verdicts=[v]))
    assert (
        got[("xnet_slice_sla_objective_observed", (("objective", "two-way-delay-percentile"), ("slice", "data")))]
        == math.inf
    )


def test_root_cause_hints_give_one_series_per_slice_kind_and_suspect_and_counters():
    hints = [
        Hint("link-loss", ("prov2>city2b", "city2b>cnty2b"), ("egov", "video"), 0.9, (), 1, 2),
        Hint("link-loss", ("prov2>city2b",), ("video",), 0.5, (), 1, 2),
    ]
    got = samples(AnalyzerSnapshot(hints=hints, counters={"windows_ingested": 120, "windows_duplicate": 3}))
    rows = {labels: value for (name, labels), value in got.items() if name == "xnet_rootcause_hint"}
    assert rows == {
        (("kind", "link-loss"), ("slice", slice_), ("suspect", suspect)): 0.9
        for slice_ in ("egov", "video")
        for suspect in ("prov2>city2b", "city2b>cnty2b")
    }  # the stronger hint wins the shared row
    assert got[("xnet_analyzer_windows_ingested_total", ())] == 120
    assert got[("xnet_analyzer_windows_duplicate_total", ())] == 3
    assert got[("xnet_analyzer_batches_rejected_total", ())] == 0


def test_the_bus_connection_shows_only_where_there_is_a_bus_intake():
    assert not any(name.startswith("xnet_analyzer_bus_") for name, _ in samples(AnalyzerSnapshot()))
    got = samples(AnalyzerSnapshot(bus=BusLink(connected=False, disconnections=2)))
    assert got[("xnet_analyzer_bus_connected", ())] == 0
    assert got[("xnet_analyzer_bus_disconnections_total", ())] == 2
    assert samples(AnalyzerSnapshot(bus=BusLink(True, 0)))[("xnet_analyzer_bus_connected", ())] == 1
