"""The `promtool test rules` file: every alert's cases (dashboards.alerts) as promtool tests."""

from __future__ import annotations

from dashboards.alerts import AlertRule

RULE_FILES = ("rules.yml", "alerts.yml")


def promtool_tests(alerts: list[AlertRule]) -> dict:
    tests = []
    for alert in alerts:
        for case in alert.cases:
            tests.append(
                {
                    "name": f"{alert.name}: {case.name}",
                    "interval": case.interval,
                    "input_series": [{"series": s, "values": v} for s, v in case.series.items()],
                    "alert_rule_test": [
                        {
                            "eval_time": case.eval_time,
                            "alertname": alert.name,
                            "exp_alerts": [dict(expected) for expected in case.expected],
                        }
                    ],
                }
            )
    return {"rule_files": list(RULE_FILES), "evaluation_interval": "1m", "tests": tests}
