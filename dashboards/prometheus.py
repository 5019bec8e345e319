"""An example Prometheus configuration for xnetmon: the scrape jobs the alerts expect, the
generated rule files, Alertmanager, and remote write to VictoriaMetrics for the long term.

A Prometheus HA pair runs this file twice, each with its own `replica` external label
(`prometheus-a`, `prometheus-b`). The label reaches the long-term store with every series, and
the generated expressions merge it away (`dashboards.promql`); alerts leave without it
(`alert_relabel_configs`), so the pair's copies of an alert are one alert in Alertmanager.
"""

from __future__ import annotations

from dataclasses import dataclass

from dashboards.config import MixinConfig
from dashboards.promql import REPLICA_LABEL
from dashboards.victoriametrics import DEFAULT_URL as VICTORIA_METRICS_URL

COMMENT = (
    "# Example: replace the targets with your agents and analyzers; each Prometheus of an HA pair\n"
    "# sets its own `replica` (prometheus-a, prometheus-b). Built for the scrape interval given to\n"
    "# `python -m dashboards --scrape-interval`.\n"
)


@dataclass(frozen=True)
class Deployment:
    """Where things are: what one Prometheus of the pair scrapes, reads and writes to."""

    replica: str = "prometheus-a"
    agents: tuple[str, ...] = ("[2001:db8:1::1]:9862", "[2001:db8:2::1]:9862")
    analyzers: tuple[str, ...] = ("[2001:db8::10]:9863", "[2001:db8::11]:9863")
    rule_dir: str = "/etc/prometheus/xnetmon"
    alertmanagers: tuple[str, ...] = ("localhost:9093",)
    remote_write_url: str = f"{VICTORIA_METRICS_URL}/api/v1/write"


def remote_write(url: str) -> list[dict]:
    """The remote_write fragment: every sample and recorded series to VictoriaMetrics. While the
    store is away Prometheus resends from its write-ahead log (about two hours of it)."""
    return [
        {
            "url": url,
            "queue_config": {"capacity": 10000, "max_shards": 30, "max_samples_per_send": 5000},
            "metadata_config": {"send": True},
        }
    ]


def example_config(config: MixinConfig, deployment: Deployment = Deployment()) -> dict:
    interval = f"{config.scrape_interval_s:g}s"
    return {
        "global": {
            "scrape_interval": interval,
            "evaluation_interval": interval,
            "external_labels": {REPLICA_LABEL: deployment.replica},
        },
        "rule_files": [f"{deployment.rule_dir}/rules.yml", f"{deployment.rule_dir}/alerts.yml"],
        "alerting": {
            "alert_relabel_configs": [{"action": "labeldrop", "regex": REPLICA_LABEL}],
            "alertmanagers": [{"static_configs": [{"targets": list(deployment.alertmanagers)}]}],
        },
        "scrape_configs": [
            {"job_name": config.agent_job, "static_configs": [{"targets": list(deployment.agents)}]},
            {"job_name": config.analyzer_job, "static_configs": [{"targets": list(deployment.analyzers)}]},
        ],
        "remote_write": remote_write(deployment.remote_write_url),
    }
