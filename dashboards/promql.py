"""PromQL pieces every generated expression shares, so that no panel, recording rule or
alert counts a Prometheus HA pair twice.

Each Prometheus of a pair scrapes the same targets and carries its own `replica` external
label (`dashboards.prometheus`). Inside one Prometheus that label does not exist, and
`max without (replica)` changes nothing; in the long-term store (VictoriaMetrics), where
both replicas remote-write, it merges the pair's copies of a series into one before any
`sum` or `count` would add them up, and a gap in one replica is filled by the other.
"""

from __future__ import annotations

REPLICA_LABEL = "replica"


def one_replica(expr: str) -> str:
    """`expr` with the HA pair's copies of each series merged (the highest wins)."""
    return f"max without ({REPLICA_LABEL}) ({expr})"


def counter_rate(selector: str, window: str, function: str = "rate") -> str:
    """`rate` (or `increase`) of a counter selector over `window`, once per series across replicas."""
    return one_replica(f"{function}({selector}[{window}])")
