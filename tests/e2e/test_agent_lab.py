"""Agents on three lab sites probe each other in every slice; a one-way loss fault on one
link shows up, through a real Prometheus, only on the paths that cross it and only in the
direction it drops."""

from __future__ import annotations

import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager

import pytest

from tests.prometheus_support import query, running_prometheus, wait_for
from tests.support import REPO, stop_process

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.tool("prometheus")]

SITES = ("cnty1a", "core", "cnty2b")  # cnty1a -> cnty2b crosses core -> prov2
METRICS_PORT = 9862
STAMP_PORT = 8620
SENT, LOST = "xnet_probe_sent_total", "xnet_probe_lost_total"


def agent_config(lab, site: str) -> str:
    # The agents start together: each waits until every site's reflector answers, or its
    # first probes to a site whose agent is still starting count as lost.
    targets = "\n".join(
        f"  - {{name: {other}, address: '{lab.address(other)}', port: {STAMP_PORT}}}"
        for other in SITES
        if other != site
    )
    return f"""
site: {{name: {site}, addresses: ['{lab.address(site)}']}}
targets:
{targets}
probing: {{interval_s: 0.05, window_s: 1, timeout_s: 0.3, start_delay_s: 2, trace: {{enabled: false}}}}
reflector: {{enabled: true, bind: ['{lab.address(site)}'], port: {STAMP_PORT}, rate_limit_pps: 0}}
metrics: {{listen: '[{lab.address(site)}]:{METRICS_PORT}'}}
"""


def latest(series: str) -> str:
    """A counter's last scraped value. On a loaded machine a scrape can miss its 1 s timeout,
    which leaves that agent's series stale, absent from a plain instant query, until the next."""
    return f"last_over_time({series}[30s])"


@contextmanager
def agent(lab, site: str, tmp_path):
    config = tmp_path / f"{site}.yaml"
    config.write_text(agent_config(lab, site))
    log = (tmp_path / f"{site}.log").open("w")
    proc = subprocess.Popen(
        lab.exec_argv(site, [sys.executable, "-m", "xnetmon", "agent", "--config", str(config)]),
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )
    try:
        yield proc
    finally:
        stop_process(proc)
        log.close()


def test_one_way_link_loss_appears_only_on_the_paths_and_direction_that_cross_it(lab, tmp_path):
    fault = lab.fault_loss("core-prov2", 0.3, from_site="core")  # core -> prov2 only
    try:
        with ExitStack() as stack:
            for site in SITES:
                stack.enter_context(agent(lab, site, tmp_path))
            scrape = [f"[{lab.address(site)}]:{METRICS_PORT}" for site in SITES]
            netns = lab.namespace("core")
            prom = stack.enter_context(running_prometheus(tmp_path, *scrape, netns=netns))
            wait_for(prom, 'sum(up{job="xnet-agent"})', lambda r: list(r.values()) == [3.0], netns=netns)
            # 6 paths x 4 slices at 20 probes/s: ~20 s gives ~400 probes per path and slice.
            # Every path and slice reporting (agents start probing after their start delay), then enough probes.
            wait_for(prom, f"count({latest(SENT)})", lambda r: list(r.values()) == [24.0], netns=netns)
            wait_for(prom, f"min({latest(SENT)})", lambda r: r and min(r.values()) >= 300, netns=netns)
            at = time.time()  # every figure at one instant
            sent = query(prom, f"sum by (src, dst) ({latest(SENT)})", netns, at)
            lost = query(prom, f"sum by (direction, dst, src) ({latest(LOST)})", netns, at)
            ratio = query(prom, f"sum by (src, dst) ({latest(LOST)}) / sum by (src, dst) ({latest(SENT)})", netns, at)
            crossing = latest(SENT + '{src="cnty1a", dst="cnty2b"}')
            slices = query(prom, f"count by (slice) ({crossing})", netns, at)
            send_errors = query(prom, f"sum by (src) ({latest('xnet_collector_send_errors_total')})", netns, at)
            socket_drops = query(prom, f"sum by (src) ({latest('xnet_collector_socket_drops_total')})", netns, at)
    finally:
        lab.heal(fault)
    assert len(sent) == 6 and set(slices) == {("best-effort",), ("data",), ("egov",), ("video",)}

    def share(src: str, dst: str, direction: str) -> float:
        return lost.get((direction, dst, src), 0.0) / sent[(dst, src)]

    def own(src: str, dst: str, direction: str) -> float:
        """The most of a path's loss in `direction` the agents count as their own, not the
        network's (a loaded machine makes some): sends the kernel refused and requests dropped
        at the target reflector's full socket (forward), replies dropped at the sender's (reverse)."""
        made = (
            send_errors.get((src,), 0.0) + socket_drops.get((dst,), 0.0)
            if direction == "forward"
            else socket_drops.get((src,), 0.0)
        )
        return made / sent[(dst, src)]

    agents_own = (send_errors, socket_drops)
    crossing_forward = [("cnty1a", "cnty2b"), ("core", "cnty2b")]  # requests cross core -> prov2
    crossing_reverse = [("cnty2b", "cnty1a"), ("cnty2b", "core")]  # replies cross it
    untouched = [("cnty1a", "core"), ("core", "cnty1a")]
    for src, dst in crossing_forward:
        assert 0.15 < share(src, dst, "forward") < 0.45, (src, dst, lost, sent)
        assert share(src, dst, "reverse") - own(src, dst, "reverse") < 0.03, (src, dst, lost, agents_own)
    for src, dst in crossing_reverse:
        assert 0.15 < share(src, dst, "reverse") < 0.45, (src, dst, lost, sent)
        assert share(src, dst, "forward") - own(src, dst, "forward") < 0.03, (src, dst, lost, agents_own)
    for src, dst in untouched:
        network = ratio[(dst, src)] - own(src, dst, "forward") - own(src, dst, "reverse")
        assert network < 0.01, (src, dst, ratio, agents_own)
