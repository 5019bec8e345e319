"""The example Alertmanager configuration: a receiver per slice and severity, inhibition of
path alerts by slice-level ones, and amtool's reading of it."""

from __future__ import annotations

import pytest

from dashboards.alertmanager import SEVERITY_RECEIVERS, WEBHOOK, example_config
from dashboards.config import load_config
from tests.dashboard_support import run_tool


def test_every_slice_gets_a_receiver_per_severity_and_every_receiver_a_webhook():
    config = load_config()
    example = example_config(config)
    names = [r["name"] for r in example["receivers"]]
    assert len(names) == len(set(names)) == 2 + len(config.policies) * len(SEVERITY_RECEIVERS)
    assert all(
        r["webhook_configs"] == [{"url": WEBHOOK.format(name=r["name"]), "send_resolved": True}]
        for r in example["receivers"]
    )
    routed = {route["receiver"] for route in example["route"]["routes"]}
    routed |= {sub["receiver"] for route in example["route"]["routes"] for sub in route.get("routes", ())}
    assert routed | {example["route"]["receiver"]} == set(names)  # no receiver is left unused


def test_path_alerts_are_held_back_by_the_slice_alerts_that_repeat_them():
    inhibit = example_config(load_config())["inhibit_rules"]
    assert all(rule["equal"][-1] == "slice" for rule in inhibit)
    assert sum(rule["target_matchers"] == ['scope="path"'] for rule in inhibit) == 2


@pytest.mark.tool("amtool")
def test_amtool_accepts_the_example_alertmanager_config():
    done = run_tool(["amtool", "check-config", "alertmanager.yml"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 inhibit rules" in done.stdout


@pytest.mark.tool("amtool")
def test_alertmanager_routes_by_slice_then_severity():
    def receiver(**labels: str) -> str:
        argv = [
            "amtool",
            "config",
            "routes",
            "test",
            "--config.file=alertmanager.yml",
            *(f"{k}={v}" for k, v in labels.items()),
        ]
        done = run_tool(argv)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert receiver(alertname="XnetSliceDown", slice="video", severity="critical", scope="slice") == "video-pager"
    assert receiver(alertname="XnetPathLossHigh", slice="egov", severity="warning", scope="path") == "egov-tickets"
    assert receiver(alertname="XnetPathChanged", slice="data", severity="info", scope="path") == "data-chat"
    assert receiver(alertname="XnetAgentDown", severity="warning", scope="collector") == "monitoring-team"
