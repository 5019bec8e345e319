"""VictoriaMetrics as xnetmon's long-term store: the server's flags and the Grafana data
sources that put it beside Prometheus.

Prometheus keeps days; operators judge error budgets over 30 days and compare a month with
the same month a year before, so VictoriaMetrics keeps 13 months (`-retentionPeriod` counts
months when it has no unit). The flags go to Debian's `/etc/default/victoria-metrics`
(its `ARGS`, read by the package's systemd unit). VictoriaMetrics answers the Prometheus
query API, so the dashboards run on it unchanged: their data source variable lists both.
"""

from __future__ import annotations

import shlex

RETENTION_MONTHS = 13
STORAGE_DIR = "/var/lib/victoria-metrics"  # the Debian package's, owned by _victoria-metrics
LISTEN = ":8428"
DEFAULT_URL = "http://localhost:8428"
PROMETHEUS_URL = "http://localhost:9090"

COMMENT = "# For /etc/default/victoria-metrics (Debian's victoria-metrics package reads ARGS).\n"


def flags(storage_dir: str = STORAGE_DIR, listen: str = LISTEN) -> list[str]:
    return [
        f"-storageDataPath={storage_dir}",
        f"-retentionPeriod={RETENTION_MONTHS}",
        f"-httpListenAddr={listen}",
    ]


def default_file() -> str:
    """The text of /etc/default/victoria-metrics."""
    return COMMENT + f'ARGS="{shlex.join(flags())}"\n'


def flags_of(default_text: str) -> list[str]:
    """The flags an /etc/default/victoria-metrics text passes (its ARGS)."""
    for line in default_text.splitlines():
        if line.startswith("ARGS="):
            return shlex.split(shlex.split(line.removeprefix("ARGS="))[0])
    raise ValueError("no ARGS= line")


def datasources(scrape_interval_s: float) -> dict:
    """Grafana data source provisioning (/etc/grafana/provisioning/datasources/): Prometheus for
    the recent days and alerts, VictoriaMetrics for 30-day budgets and month comparisons."""
    return {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "Prometheus",
                "uid": "xnet-prometheus",
                "type": "prometheus",
                "access": "proxy",
                "url": PROMETHEUS_URL,
                "isDefault": True,
                "jsonData": {"timeInterval": f"{scrape_interval_s:g}s"},
            },
            {
                "name": "VictoriaMetrics",
                "uid": "xnet-victoriametrics",
                "type": "prometheus",  # VictoriaMetrics answers the Prometheus query API
                "access": "proxy",
                "url": DEFAULT_URL,
                "jsonData": {"timeInterval": f"{scrape_interval_s:g}s"},
            },
        ],
    }
