"""The alerting rules: names, labels and annotations by the conventions, one runbook per alert,
burn-rate alerts made from each slice's policy, and the annotation fragments."""

from __future__ import annotations

from pathlib import Path

from analyzer.sla.policies import LAB_POLICY_FILE
from dashboards.alerts import alert_groups, alert_rules, rendered_hint
from dashboards.config import load_config
from tests.dashboard_support import generated_alerts

RUNBOOKS = Path(__file__).parents[2] / "dashboards" / "runbooks"


def test_alerts_follow_the_naming_and_annotation_conventions():
    rules = generated_alerts()
    names = {rule["alert"] for rule in rules}
    assert {
        "XnetSliceDown",
        "XnetSliceErrorBudgetBurn",
        "XnetNodeDown",
        "XnetAgentDown",
        "XnetCollectorSchedulingLag",
        "XnetCollectorSpoolGrowing",
        "XnetMalformedPackets",
    } <= names
    for rule in rules:
        assert rule["alert"].startswith("Xnet") and rule["alert"][4].isupper(), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert rule["labels"]["scope"] in {"slice", "node", "path", "collector"}
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"])
        assert rule["annotations"]["runbook_url"] == f"dashboards/runbooks/{rule['alert']}.md"
        if rule["labels"]["scope"] in {"slice", "path"}:  # the hint and the slice are in the text
            assert "xnet_rootcause_hint" in rule["annotations"]["description"], rule["alert"]
    for name in names:
        runbook = RUNBOOKS / f"{name}.md"
        assert runbook.is_file(), f"no runbook for {name}"
        assert runbook.read_text().startswith(f"# {name}")


def test_burn_rate_alerts_are_generated_from_each_slices_policy():
    config = load_config(LAB_POLICY_FILE, scrape_interval_s=5)
    burns = [a for a in alert_rules(config) if a.name == "XnetSliceErrorBudgetBurn"]
    windows = {
        (a.labels["slice"], a.labels["long_window"], a.labels["short_window"], a.severity, a.for_) for a in burns
    }
    assert ("video", "1m", "5s", "critical", "2s") in windows and ("egov", "5m", "30s", "warning", "12s") in windows
    assert len(burns) == 4 * 3
    assert next(a for a in alert_rules(config) if a.name == "XnetSliceDown").signals == (
        "slice_src_dst:xnet_probe_loss:ratio_rate15s",
    )


def test_every_alert_has_its_cases_and_lands_in_one_group():
    config = load_config()
    rules = alert_rules(config)
    assert len({r.name for r in rules}) > 5
    for rule in rules:
        assert rule.cases and rule.signals, rule.name
    grouped = [r["alert"] for group in alert_groups(config) for r in group["rules"]]
    assert sorted(grouped) == sorted(r.name for r in rules)
    assert next(r for r in rules if r.for_ == "0s").rule(config).get("for") is None  # "for: 0s" is left out


def test_a_hint_reads_kind_suspect_and_confidence_or_none_yet():
    assert rendered_hint() == "none yet"
    assert rendered_hint("link-loss", "core>prov2", "80%") == "link-loss at core>prov2 (confidence 80%)"


def test_segment_loss_alerts_follow_each_slices_loss_bound_and_leave_out_end_to_end():
    config = load_config()
    segments = [a for a in alert_rules(config) if a.name == "XnetSegmentLossHigh"]
    bounded = {name for name in config.policies if config.loss_bound(name) is not None}
    assert {a.labels["slice"] for a in segments} == bounded and len(segments) == len(bounded)
    for alert in segments:
        bound = config.loss_bound(alert.labels["slice"])
        assert alert.expr.endswith(f" > {bound:g}") and 'kind!="end-to-end"' in alert.expr
        assert "slice_segment_kind:xnet_segment_loss:ratio_rate5m" in alert.signals[0]
        assert (alert.scope, alert.severity) == ("path", "warning")
