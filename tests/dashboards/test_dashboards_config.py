"""The generator's configuration: the analyzer's own policies with a few deployment facts."""

from __future__ import annotations

from analyzer.sla.policies import (
    AVAILABILITY,
    LAB_POLICY_FILE,
    LOSS,
    TWO_WAY_DELAY,
    Objective,
    SlaPolicy,
    load_policies,
)
from dashboards.config import MixinConfig, load_config


def test_policies_are_the_analyzers_own():
    assert load_config(LAB_POLICY_FILE).policies == load_policies(LAB_POLICY_FILE)


def test_the_fast_window_is_three_scrapes():
    assert load_config().fast_window == "45s"
    assert load_config(scrape_interval_s=5).fast_window == "15s"
    assert load_config(scrape_interval_s=20).fast_window == "1m"


def test_runbook_links_join_the_base_whatever_its_trailing_slash():
    assert load_config().runbook_url("XnetSliceDown") == "dashboards/runbooks/XnetSliceDown.md"
    wiki = load_config(runbook_base_url="https://git.example/ops/runbooks/")
    assert wiki.runbook_url("XnetAgentDown") == "https://git.example/ops/runbooks/XnetAgentDown.md"


def test_objective_lookups_answer_none_for_a_slice_without_them():
    config = load_config()
    video = config.policies["video"]
    assert config.loss_bound("video") == video.objective(LOSS).bound
    assert config.delay_objective("video") == video.objective(TWO_WAY_DELAY)
    availability_only = SlaPolicy("video", (Objective(AVAILABILITY, 0.999),))
    without = MixinConfig(policies={"video": availability_only})
    assert (without.loss_bound("video"), without.delay_objective("video")) == (None, None)
