"""The recording rules: names by the level:metric:operations convention, a fast window of three
scrapes, loss ratios clamped at 1, and every series an alert compares is recorded."""

from __future__ import annotations

import re

from dashboards.alerts import alert_rules
from dashboards.config import load_config
from dashboards.rules import LAST_WINDOW_AGE, TOP_HINT, loss_ratio, recording_groups, slice_loss

RECORD_NAME = re.compile(r"^[a-z_]+:xnet_[a-z_]+:[a-z0-9_]+$")


def records(config) -> list[str]:
    return [rule["record"] for group in recording_groups(config) for rule in group["rules"]]


def test_record_names_follow_the_convention_and_are_unique():
    names = records(load_config())
    assert names and len(names) == len(set(names))
    assert all(RECORD_NAME.match(name) for name in names), names
    assert {TOP_HINT, LAST_WINDOW_AGE, slice_loss("5m"), slice_loss("1h")} <= set(names)


def test_the_fast_window_follows_the_scrape_interval_and_is_not_recorded_twice():
    assert slice_loss("45s") in records(load_config(scrape_interval_s=15))
    slow = records(load_config(scrape_interval_s=100))  # three scrapes: the 5m window itself
    assert slow.count(slice_loss("5m")) == 1


def test_every_recorded_series_an_alert_compares_is_recorded():
    config = load_config()
    recorded = set(records(config))
    compared = {s for alert in alert_rules(config) for s in alert.signals if RECORD_NAME.match(s)}
    assert compared and compared <= recorded


def test_a_loss_ratio_sums_before_dividing_and_never_passes_one():
    expr = loss_ratio("slice", "5m")
    assert expr.startswith("clamp_max(\n  sum by (slice) (max without (replica) (rate(xnet_probe_lost_total[5m])))")
    assert "/ sum by (slice) (max without (replica) (rate(xnet_probe_sent_total[5m])))" in expr
    assert expr.endswith(",\n  1\n)")
