"""The all-in-one monitor on the lab, watched by a real Prometheus (and Alertmanager) that
run inside the core site's namespace, where every agent's /metrics and the analyzer are
routed. Prometheus loads the mixin built for the lab: the lab SLA policies (seconds-long
burn windows) and a 5 s scrape interval, as an operator would build it for their own.

Rules are evaluated, and the analyzer scraped, once a lab interval (1 s): the lab's page
alerts hold for 2 s and 4 s, which a 5 s evaluation stretched to 5 s and 10 s, and an
evaluation fell ~4.7 s after the analyzer's scrape in every round measured; the burn rates
change once an interval, so a slower scrape only adds its wait (bench/alert_delay.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from analyzer.sla.policies import LAB_POLICY_FILE
from dashboards.build import build, write
from dashboards.config import MixinConfig, load_config
from tests.prometheus_support import _get, free_tcp_port, query, running_prometheus, serving, wait_for
from xnetmon.allinone import AGENT_METRICS_PORT, API_PORT, LAB_INTERVAL_S, LAB_SITES, lab_deployment

SCRAPE_INTERVAL_S = 5
EVALUATION_INTERVAL_S = LAB_INTERVAL_S
ANALYZER_SCRAPE_INTERVAL_S = LAB_INTERVAL_S


@dataclass(frozen=True)
class Monitored:
    config: MixinConfig  # what the rules were built from
    prometheus: str
    alertmanager: str | None
    netns: str  # where both run: query them from there

    def query(self, promql: str) -> dict[tuple, float]:
        return query(self.prometheus, promql, self.netns)

    def wait_for_scrapes_after(self, at: float) -> None:
        """Until Prometheus has scraped every target successfully since the Unix time `at`."""
        wait_for(
            self.prometheus,
            f"count(timestamp(up == 1) > {at:.3f})",
            lambda r: list(r.values()) == [float(len(LAB_SITES) + 1)],
            netns=self.netns,
        )

    def alerts(self) -> list[dict]:
        """Alertmanager's alerts (active, inhibited or silenced; resolved ones are left out)."""
        return _get(f"{self.alertmanager}/api/v2/alerts", self.netns)


def lab_mixin(out: Path) -> MixinConfig:
    config = load_config(LAB_POLICY_FILE, scrape_interval_s=SCRAPE_INTERVAL_S)
    write(build(config), out)
    return config


def prometheus_config(
    lab,
    mixin_dir: Path,
    config: MixinConfig,
    alertmanager: str | None,
    *,
    scrape_s: float = SCRAPE_INTERVAL_S,
    evaluation_s: float = EVALUATION_INTERVAL_S,
    analyzer_scrape_s: float = ANALYZER_SCRAPE_INTERVAL_S,
) -> str:
    agents = ", ".join(f"'[{lab.address(site)}]:{AGENT_METRICS_PORT}'" for site in LAB_SITES)
    alerting = (
        "alerting: {alertmanagers: [{static_configs: [{targets: ['%s']}]}]}\n" % alertmanager.removeprefix("http://")
        if alertmanager
        else ""
    )
    return (
        f"global: {{scrape_interval: {scrape_s:g}s, evaluation_interval: {evaluation_s:g}s}}\n"
        f"rule_files: ['{mixin_dir / 'rules.yml'}', '{mixin_dir / 'alerts.yml'}']\n" + alerting + "scrape_configs:\n"
        f"  - job_name: {config.agent_job}\n    static_configs: [{{targets: [{agents}]}}]\n"
        f"  - job_name: {config.analyzer_job}\n    scrape_interval: {analyzer_scrape_s:g}s\n"
        f"    static_configs: [{{targets: ['[{lab.address('core')}]:{API_PORT}']}}]\n"
    )


def running_alertmanager(tmp_path: Path, config_file: Path, netns: str | None):
    """Our own Alertmanager (Debian's prometheus-alertmanager) on a free loopback port, no cluster."""
    url = f"http://127.0.0.1:{free_tcp_port('127.0.0.1')}"
    argv = [
        "prometheus-alertmanager",
        f"--config.file={config_file}",
        f"--storage.path={tmp_path / 'am-data'}",
        f"--web.listen-address={url.removeprefix('http://')}",
        "--cluster.listen-address=",
        "--log.level=warn",
    ]
    return serving(argv, url, tmp_path / "alertmanager.log", netns)


@contextlib.contextmanager
def monitored_lab(lab, tmp_path: Path, *, alerting: bool = False) -> Iterator[Monitored]:
    """`xnetmon run`'s lab deployment, Prometheus with the lab mixin and, with `alerting`, the
    mixin's example Alertmanager; yields once every target is scraped."""
    mixin_dir, run_dir = tmp_path / "mixin", tmp_path / "run"
    run_dir.mkdir()
    config = lab_mixin(mixin_dir)
    netns = lab.namespace("core")
    with contextlib.ExitStack() as stack:
        stack.enter_context(lab_deployment(lab, run_dir, api_port=0))  # any free port: other runs may hold 9863
        alertmanager = None
        if alerting:
            alertmanager = stack.enter_context(running_alertmanager(tmp_path, mixin_dir / "alertmanager.yml", netns))
        prometheus = stack.enter_context(
            running_prometheus(
                tmp_path, netns=netns, config_text=prometheus_config(lab, mixin_dir, config, alertmanager)
            )
        )
        wait_for(prometheus, "up == 1", lambda r: len(r) == len(LAB_SITES) + 1, netns=netns)
        yield Monitored(config, prometheus, alertmanager, netns)
