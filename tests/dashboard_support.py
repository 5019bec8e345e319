"""Reading the generated files in tests: every panel query of the Grafana dashboards, PromQL
with the dashboard variables replaced by what Grafana would send (so Prometheus can run it),
the generated alerting rules, and the Prometheus and Alertmanager tools run beside them."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import yaml

from dashboards.build import GENERATED_DIR

DASHBOARD_DIR = GENERATED_DIR / "grafana"


def dashboards() -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(DASHBOARD_DIR.glob("*.json"))]


def data_panels(board: dict) -> list[dict]:
    """The board's panels without its row headers (which hold no query)."""
    return [panel for panel in board["panels"] if panel["type"] != "row"]


def panel_queries() -> Iterator[tuple[str, str, str]]:
    """(dashboard uid, panel title, expr) for every query of every panel."""
    for board in dashboards():
        for panel in data_panels(board):
            for target in panel["targets"]:
                yield board["uid"], panel["title"], target["expr"]


def runnable(expr: str, rate_interval: str = "20s", range_: str = "5m") -> str:
    """`expr` as Grafana sends it with every variable at All (`.*`)."""
    for variable in ("$job", "$slice", "$src", "$dst"):
        expr = expr.replace(variable, ".*")
    return expr.replace("$__rate_interval", rate_interval).replace("$__range", range_)


def generated_alerts() -> list[dict]:
    """Every rule of the generated alerts.yml."""
    groups = yaml.safe_load((GENERATED_DIR / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def run_tool(argv: list[str], cwd: Path = GENERATED_DIR) -> subprocess.CompletedProcess:
    """promtool or amtool over files in `cwd` (by default the committed generated files)."""
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120)
