"""The example Prometheus configuration: the jobs the alerts expect, a `replica` external label
that alerts leave without, remote write to VictoriaMetrics, and promtool's reading of it."""

from __future__ import annotations

import pytest

from dashboards.build import GENERATED_DIR
from dashboards.config import load_config
from dashboards.prometheus import Deployment, example_config, remote_write
from dashboards.render import to_yaml
from tests.dashboard_support import run_tool


def test_each_replica_labels_its_series_and_alerts_leave_without_the_label():
    config = load_config()
    pair = [example_config(config, Deployment(replica=name)) for name in ("prometheus-a", "prometheus-b")]
    assert [c["global"]["external_labels"] for c in pair] == [{"replica": "prometheus-a"}, {"replica": "prometheus-b"}]
    assert pair[0]["alerting"]["alert_relabel_configs"] == [{"action": "labeldrop", "regex": "replica"}]
    assert {job["job_name"] for job in pair[0]["scrape_configs"]} == {config.agent_job, config.analyzer_job}
    assert pair[0]["global"]["scrape_interval"] == "15s"


def test_remote_write_sends_to_the_given_store():
    [target] = remote_write("http://vm.example:8428/api/v1/write")
    assert target["url"] == "http://vm.example:8428/api/v1/write"
    assert example_config(load_config())["remote_write"][0]["url"].endswith(":8428/api/v1/write")


@pytest.mark.tool("promtool")
def test_promtool_accepts_the_configuration_with_the_generated_rules(tmp_path):
    config = example_config(load_config(), Deployment(rule_dir=str(GENERATED_DIR)))
    (tmp_path / "prometheus.yml").write_text(to_yaml(config))
    done = run_tool(["promtool", "check", "config", "prometheus.yml"], cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout
