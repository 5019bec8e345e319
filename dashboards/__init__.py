"""Grafana dashboards, Prometheus recording and alert rules, their promtool unit tests and an
example Alertmanager configuration, generated from the SLA policies (`python -m dashboards`)
and committed under dashboards/generated/; runbooks for the alerts in dashboards/runbooks/."""
