"""The committed files under dashboards/generated/ are what the generator makes, and the
Prometheus and Alertmanager tools accept them: `promtool check rules`, `promtool test rules`
(every alert has a case that fires and one that stays silent), `amtool check-config`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from analyzer.sla.policies import LAB_POLICY_FILE
from dashboards.__main__ import main
from dashboards.alerts import alert_rules
from dashboards.build import GENERATED_DIR, build, stale
from dashboards.config import load_config

RUNBOOKS = Path(__file__).parents[2] / "dashboards" / "runbooks"


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120)


def alerts_file() -> list[dict]:
    groups = yaml.safe_load((GENERATED_DIR / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_committed_files_are_what_the_generator_makes_now():
    assert stale(build(load_config())) == [], "run `python -m dashboards` and commit dashboards/generated/"
    assert main(["--check"]) == 0


def test_check_mode_reports_a_hand_edited_file(tmp_path):
    assert main(["--out", str(tmp_path)]) == 0
    (tmp_path / "alerts.yml").write_text("groups: []\n")
    assert main(["--out", str(tmp_path), "--check"]) == 1


def test_a_bad_policy_file_is_a_usage_error_naming_it(tmp_path, capsys):
    bad = tmp_path / "policies.yaml"
    bad.write_text("policies: {video: {objectives: []}}\n")
    assert main(["--policies", str(bad), "--out", str(tmp_path / "out")]) == 2
    assert str(bad) in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_alerts_follow_the_naming_and_annotation_conventions():
    rules = alerts_file()
    names = {rule["alert"] for rule in rules}
    assert {"XnetSliceDown", "XnetSliceErrorBudgetBurn", "XnetNodeDown", "XnetAgentDown",
            "XnetCollectorSchedulingLag", "XnetCollectorSpoolGrowing", "XnetMalformedPackets"} <= names
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
    windows = {(a.labels["slice"], a.labels["long_window"], a.labels["short_window"], a.severity, a.for_)
               for a in burns}
    assert ("video", "1m", "5s", "critical", "2s") in windows and ("egov", "5m", "30s", "warning", "12s") in windows
    assert len(burns) == 4 * 3
    assert next(a for a in alert_rules(config) if a.name == "XnetSliceDown").signals == (
        "slice_src_dst:xnet_probe_loss:ratio_rate15s",)


@pytest.mark.tool("promtool")
def test_promtool_accepts_the_rules():
    done = run(["promtool", "check", "rules", "rules.yml", "alerts.yml"], GENERATED_DIR)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == 2


@pytest.mark.tool("promtool")
def test_promtool_unit_tests_pass_with_a_firing_and_a_silent_case_per_alert():
    tests = yaml.safe_load((GENERATED_DIR / "tests.yml").read_text())["tests"]
    for name in {rule["alert"] for rule in alerts_file()}:
        cases = [t["alert_rule_test"][0] for t in tests if t["alert_rule_test"][0]["alertname"] == name]
        assert any(c["exp_alerts"] for c in cases) and any(not c["exp_alerts"] for c in cases), name
    done = run(["promtool", "test", "rules", "tests.yml"], GENERATED_DIR)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "SUCCESS" in done.stdout


@pytest.mark.tool("promtool")
def test_promtool_unit_tests_catch_a_broken_rule(tmp_path):
    for name in ("rules.yml", "tests.yml"):
        shutil.copy(GENERATED_DIR / name, tmp_path / name)
    # Total loss read as 90 % instead of 99 %: the "heavy but not total loss" case must fail.
    text = (GENERATED_DIR / "alerts.yml").read_text().replace(">= 0.99) > 0", ">= 0.9) > 0")
    (tmp_path / "alerts.yml").write_text(text)
    done = run(["promtool", "test", "rules", "tests.yml"], tmp_path)
    assert done.returncode != 0 and "heavy but not total loss" in done.stdout + done.stderr


@pytest.mark.tool("amtool")
def test_amtool_accepts_the_example_alertmanager_config():
    done = run(["amtool", "check-config", "alertmanager.yml"], GENERATED_DIR)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 inhibit rules" in done.stdout


@pytest.mark.tool("amtool")
def test_alertmanager_routes_by_slice_then_severity():
    def receiver(**labels: str) -> str:
        argv = ["amtool", "config", "routes", "test", "--config.file=alertmanager.yml",
                *(f"{k}={v}" for k, v in labels.items())]
        done = run(argv, GENERATED_DIR)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert receiver(alertname="XnetSliceDown", slice="video", severity="critical", scope="slice") == "video-pager"
    assert receiver(alertname="XnetPathLossHigh", slice="egov", severity="warning", scope="path") == "egov-tickets"
    assert receiver(alertname="XnetPathChanged", slice="data", severity="info", scope="path") == "data-chat"
    assert receiver(alertname="XnetAgentDown", severity="warning", scope="collector") == "monitoring-team"
