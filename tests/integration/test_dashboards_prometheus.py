"""No silent empty panel: Prometheus scrapes `xnetmon run` on the lab, and every PromQL
expression of every dashboard panel, every recording rule and every alert's signal returns
data. Expressions about metrics that only exist with passive TCP RTT, alternate marking,
hints of a kind, or an embedded reflector are listed in MAY_BE_EMPTY with the reason; they
are excused only while their metric is absent altogether, and checked whenever it is present.
The Flows dashboard's traffic panels fill from the softflowd exports `xnetmon run` sets up."""

from __future__ import annotations

import sys
import time

import pytest
import yaml

from dashboards.alerts import alert_rules
from tests.dashboard_support import panel_queries, runnable
from tests.lab_monitoring import SCRAPE_INTERVAL_S, monitored_lab
from tests.support import wait_until
from xnetmon.allinone import LAB_STAMP_PORT

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.tool("prometheus")]

RATE_INTERVAL = f"{4 * SCRAPE_INTERVAL_S}s"  # Grafana's $__rate_interval: four scrape intervals
# Each lab agent captures its links with passive TCP RTT on, but the only TCP there is the
# agents' shipments to the analyzer, whose samples may not have ended a flow record yet; and
# nothing in `xnetmon run` marks traffic (`collector.capture.altmark_sender` does).
PASSIVE = "the lab's only TCP is the agents' shipments; their RTT samples may not have arrived yet"
ALTMARK = "nothing in the lab's all-in-one sends alternate-marked traffic (collector.capture.altmark_sender does)"
REFLECTOR = (
    "the lab's all-in-one runs each site's reflector as its own `xnetmon reflect` process, which "
    "serves no /metrics; agents with an embedded reflector export these"
)
# A piece of an expression -> (the series whose total absence excuses an empty answer, why).
# First match wins. Whenever the series exist, the expression must return data.
MAY_BE_EMPTY = {
    'kind="node-down"': (
        'xnet_rootcause_hint{kind="node-down"}',
        "node-down hints exist only while a node is down (test_alerting_lab takes one down)",
    ),
    "xnet_passive_rtt_seconds": ('{__name__=~"xnet_passive_rtt_seconds.*"}', PASSIVE),
    "xnet_tcp_retransmissions_total": ("xnet_tcp_retransmissions_total", PASSIVE),
    "xnet_altmark_": ('{__name__=~"xnet_altmark_.*"}', ALTMARK),
    "xnet_segment_": (
        '{__name__=~"xnet_segment_.*"}',
        "in-situ segments exist only once marked flows have crossed two counting points",
    ),
    "xnet_rootcause_hint": ("xnet_rootcause_hint", "a healthy lab has no root-cause hint (faults make them)"),
    "xnet_reflector_packets_total": ("xnet_reflector_packets_total", REFLECTOR),
    "xnet_malformed_packets_total": (
        "xnet_malformed_packets_total",
        REFLECTOR + " (the agents' flow receivers count only undecodable exports)",
    ),
}


def send_garbage_to_the_core_reflector(lab) -> None:
    """Undecodable datagrams to a STAMP reflector, so the malformed-packet series exist."""
    code = (
        "import socket; s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n"
        f"for _ in range(20): s.sendto(b'not stamp', ('{lab.address('core')}', {LAB_STAMP_PORT}))"
    )
    lab.exec("cnty1a", [sys.executable, "-c", code], check=True)


def reason_to_be_empty(mon, expr: str) -> str | None:
    """Why `expr` may answer nothing now, or None when it must answer."""
    for piece, (series, why) in MAY_BE_EMPTY.items():
        if piece in expr:
            return None if mon.query(series) else why
    return None


def test_every_panel_rule_and_alert_expression_returns_data_on_the_lab(lab, tmp_path):
    with monitored_lab(lab, tmp_path) as mon:
        send_garbage_to_the_core_reflector(lab)
        # Loss on one link for the slices' loss panels to have something to show; a hint engine,
        # when present, has something to blame.
        fault = lab.fault_loss("core-prov2", 0.3, slice="egov")
        mon.wait_for_scrapes_after(time.time())  # the garbage counted, the loss under way
        send_garbage_to_the_core_reflector(lab)  # a second sample, so rate() sees an increase
        mon.wait_for_scrapes_after(time.time())
        rules = yaml.safe_load((tmp_path / "mixin" / "rules.yml").read_text())["groups"]
        expressions = [(f"{uid} / {title}", runnable(expr, RATE_INTERVAL)) for uid, title, expr in panel_queries()]
        expressions += [(f"recording rule {r['record']}", r["record"]) for g in rules for r in g["rules"]]
        expressions += [(f"alert {a.name} signal", s) for a in alert_rules(mon.config) for s in a.signals]
        expressions += [(f"alert {a.name} expression", a.expr) for a in alert_rules(mon.config)]  # must parse
        empty, excused = [], []

        def every_expression_answers() -> bool:
            """Rules evaluate on their own clock and rate windows fill scrape by scrape: check
            until every expression answers or has a listed reason not to, and those are few."""
            empty.clear()
            excused.clear()
            for where, expr in expressions:
                result = mon.query(expr)  # fails the test on a PromQL error
                if result or where.endswith("expression"):
                    continue
                why = reason_to_be_empty(mon, expr)
                if why is None:
                    empty.append(where)
                else:
                    excused.append(f"{where}: {why}")
            return not empty and len(excused) < len(expressions) // 3

        wait_until(
            every_expression_answers,
            interval=SCRAPE_INTERVAL_S,
            what=lambda: f"data for every expression; without: {empty}; excused: {len(excused)}",
        )
        lab.heal(fault)
    print(f"\n{len(expressions)} expressions checked; {len(excused)} empty for a listed reason:")
    print("\n".join(f"  {line}" for line in excused))
    assert empty == [], f"expressions with no data: {empty}"
    assert len(excused) < len(expressions) // 3  # the listed reasons excuse a minority
