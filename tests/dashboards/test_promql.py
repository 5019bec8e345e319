"""The replica-merging pieces: every counter is read once across an HA pair."""

from __future__ import annotations

from dashboards.promql import REPLICA_LABEL, counter_rate, one_replica


def test_one_replica_merges_the_replica_label_away():
    assert one_replica("up == 0") == f"max without ({REPLICA_LABEL}) (up == 0)"


def test_a_counter_rate_is_merged_across_replicas_before_anything_sums_it():
    assert counter_rate('x_total{a="b"}', "5m") == 'max without (replica) (rate(x_total{a="b"}[5m]))'
    assert counter_rate("x_total", "10m", "increase") == "max without (replica) (increase(x_total[10m]))"
