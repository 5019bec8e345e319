"""The `promtool test rules` file: every alert's cases as promtool tests, run by promtool, and
a broken rule that the tests catch."""

from __future__ import annotations

import shutil

import pytest
import yaml

from dashboards.alerts import AlertRule, Case
from dashboards.build import GENERATED_DIR
from dashboards.unit_tests import RULE_FILES, promtool_tests
from tests.dashboard_support import generated_alerts, run_tool


def test_each_case_becomes_one_test_of_its_alert():
    fires = Case("fires", {'up{job="x"}': "0x10"}, "5m", ({"exp_labels": {"severity": "warning"}},), interval="1m")
    silent = Case("silent", {'up{job="x"}': "1x10"}, "5m")
    alert = AlertRule("XnetExample", "up == 0", "warning", "collector", "s", "d", ("up",), cases=(fires, silent))
    tests = promtool_tests([alert])
    assert (tests["rule_files"], tests["evaluation_interval"]) == (list(RULE_FILES), "1m")
    first, second = tests["tests"]
    assert first == {
        "name": "XnetExample: fires",
        "interval": "1m",
        "input_series": [{"series": 'up{job="x"}', "values": "0x10"}],
        "alert_rule_test": [
            {"eval_time": "5m", "alertname": "XnetExample", "exp_alerts": [{"exp_labels": {"severity": "warning"}}]}
        ],
    }
    assert second["alert_rule_test"][0]["exp_alerts"] == [] and second["interval"] == "15s"


@pytest.mark.tool("promtool")
def test_promtool_unit_tests_pass_with_a_firing_and_a_silent_case_per_alert():
    tests = yaml.safe_load((GENERATED_DIR / "tests.yml").read_text())["tests"]
    for name in {rule["alert"] for rule in generated_alerts()}:
        cases = [t["alert_rule_test"][0] for t in tests if t["alert_rule_test"][0]["alertname"] == name]
        assert any(c["exp_alerts"] for c in cases) and any(not c["exp_alerts"] for c in cases), name
    done = run_tool(["promtool", "test", "rules", "tests.yml"])
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "SUCCESS" in done.stdout


@pytest.mark.tool("promtool")
def test_promtool_unit_tests_catch_a_broken_rule(tmp_path):
    for name in ("rules.yml", "tests.yml"):
        shutil.copy(GENERATED_DIR / name, tmp_path / name)
    # Total loss read as 90 % instead of 99 %: the "heavy but not total loss" case must fail.
    text = (GENERATED_DIR / "alerts.yml").read_text().replace(">= 0.99) > 0", ">= 0.9) > 0")
    (tmp_path / "alerts.yml").write_text(text)
    done = run_tool(["promtool", "test", "rules", "tests.yml"], tmp_path)
    assert done.returncode != 0 and "heavy but not total loss" in done.stdout + done.stderr
