"""The one configuration every generated file comes from: the slices' SLA policies and a
few deployment facts (job names, scrape interval, where the runbooks live).

The policies are `analyzer.sla.policies` ones, read from the same YAML file the analyzer uses,
so the alert thresholds and burn windows are always the ones the analyzer judges by.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from analyzer.sla.policies import DEFAULT_POLICY_FILE, LOSS, TWO_WAY_DELAY, Objective, SlaPolicy, load_policies
from analyzer.sla.verdicts import duration_label

DEFAULT_RUNBOOK_BASE_URL = "dashboards/runbooks"  # a path in the repository; point it at your Git web UI


@dataclass(frozen=True)
class MixinConfig:
    policies: dict[str, SlaPolicy]
    scrape_interval_s: float = 15.0
    agent_job: str = "xnet-agent"
    analyzer_job: str = "xnet-analyzer"
    runbook_base_url: str = DEFAULT_RUNBOOK_BASE_URL

    @property
    def fast_window(self) -> str:
        """The lookback of the fast total-loss alert: three scrapes, so `rate()` sees at least
        three samples and one late scrape cannot fake a silent path."""
        return duration_label(3 * self.scrape_interval_s)

    def runbook_url(self, alert: str) -> str:
        return f"{self.runbook_base_url.rstrip('/')}/{alert}.md"

    def loss_bound(self, slice_name: str) -> float | None:
        objective = self.policies[slice_name].objective(LOSS)
        return None if objective is None else objective.bound

    def delay_objective(self, slice_name: str) -> Objective | None:
        return self.policies[slice_name].objective(TWO_WAY_DELAY)


def load_config(policy_file: str | Path = DEFAULT_POLICY_FILE, **deployment) -> MixinConfig:
    """The policies of `policy_file` (default: analyzer/policies.yaml) with deployment facts."""
    return MixinConfig(policies=load_policies(policy_file), **deployment)
