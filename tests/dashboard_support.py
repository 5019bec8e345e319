"""Reading the generated Grafana dashboards in tests: every panel query, and PromQL with the
dashboard variables replaced by what Grafana would send, so Prometheus can run it."""

from __future__ import annotations

import json
from collections.abc import Iterator

from dashboards.build import GENERATED_DIR

DASHBOARD_DIR = GENERATED_DIR / "grafana"


def dashboards() -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(DASHBOARD_DIR.glob("*.json"))]


def panel_queries() -> Iterator[tuple[str, str, str]]:
    """(dashboard uid, panel title, expr) for every query of every panel."""
    for board in dashboards():
        for panel in board["panels"]:
            for target in panel["targets"]:
                yield board["uid"], panel["title"], target["expr"]


def runnable(expr: str, rate_interval: str = "20s", range_: str = "5m") -> str:
    """`expr` as Grafana sends it with every variable at All (`.*`)."""
    for variable in ("$job", "$slice", "$src", "$dst"):
        expr = expr.replace(variable, ".*")
    return expr.replace("$__rate_interval", rate_interval).replace("$__range", range_)
