"""An example Alertmanager configuration for the generated alerts.

Routing: by slice first (each slice's team gets its own receiver, from the policies), then
by severity (critical pages, warning makes a ticket, info goes to the NOC chat). Collector
alerts (no slice label) go to the monitoring team. Inhibition: while a slice-level alert
(slice down, error budget burn) or a node-down hint fires for a slice, that slice's
per-path alerts are held back, because they only repeat it path by path; a critical alert
holds back the warning of the same name and slice.

The receivers are webhooks on localhost: replace their URLs (or use e-mail, PagerDuty...).
"""

from __future__ import annotations

from dashboards.config import MixinConfig

COMMENT = "# Example: replace the receivers' webhook URLs with your pager, ticket and chat endpoints.\n"
WEBHOOK = "http://127.0.0.1:9095/xnetmon/{name}"  # a placeholder: nothing listens there by default
SEVERITY_RECEIVERS = (("critical", "pager"), ("warning", "tickets"), ("info", "chat"))


def _receiver(name: str) -> dict:
    return {"name": name, "webhook_configs": [{"url": WEBHOOK.format(name=name), "send_resolved": True}]}


def example_config(config: MixinConfig) -> dict:
    receivers = [_receiver("noc-tickets"), _receiver("monitoring-team")]
    slice_routes = []
    for slice_name in config.policies:
        by_severity = []
        for severity, kind in SEVERITY_RECEIVERS:
            name = f"{slice_name}-{kind}"
            receivers.append(_receiver(name))
            by_severity.append({"matchers": [f'severity="{severity}"'], "receiver": name})
        slice_routes.append(
            {"matchers": [f'slice="{slice_name}"'], "receiver": f"{slice_name}-tickets", "routes": by_severity}
        )
    return {
        "route": {
            "receiver": "noc-tickets",
            "group_by": ["alertname", "slice"],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "4h",
            "routes": [
                {"matchers": ['scope="collector"'], "receiver": "monitoring-team"},
                *slice_routes,
            ],
        },
        "inhibit_rules": [
            {
                "source_matchers": ['alertname=~"XnetSliceDown|XnetSliceErrorBudgetBurn"', 'severity="critical"'],
                "target_matchers": ['scope="path"'],
                "equal": ["slice"],
            },
            {"source_matchers": ['alertname="XnetNodeDown"'], "target_matchers": ['scope="path"'], "equal": ["slice"]},
            {
                "source_matchers": ['severity="critical"'],
                "target_matchers": ['severity=~"warning|info"'],
                "equal": ["alertname", "slice"],
            },
        ],
        "receivers": receivers,
    }
