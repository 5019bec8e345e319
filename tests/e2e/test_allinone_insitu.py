"""`xnetmon run` on the lab marks its business traffic: flows per slice between county sites
across the core, marked at their ingress site, counted by every agent's captures, paired by
the analyzer into segments that /segments shows within the first minute; on a healthy lab
none of them loses a packet over many blocks (blocks a capture dropped packets in are left
out, flagged, and said to be)."""

from __future__ import annotations

import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.prometheus_support import _get
from tests.support import wait_until
from xnetmon.allinone import AGENT_METRICS_PORT, lab_deployment
from xnetmon.lab_business import BUSINESS_PAIRS

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.tool("ip6tables")]

BLOCKS = 20  # paired end to end per slice (over the pairs) before the verdict
FIRST_MINUTE_S = 60.0
SLICES = ("video", "egov", "data", "best-effort")
PAIRS = {f"{sender}>{receiver}" for sender, receiver in BUSINESS_PAIRS}


def kernel_drops(lab, site: str) -> float:
    text = _get(f"http://[{lab.address(site)}]:{AGENT_METRICS_PORT}/metrics", lab.namespace(site), parse=False)
    families = text_string_to_metric_families(text.decode())
    return sum(s.value for f in families for s in f.samples if s.name == "xnet_capture_kernel_drops_total")


def test_the_all_in_one_marks_business_traffic_and_a_healthy_lab_shows_no_phantom_loss(lab, tmp_path):
    with lab_deployment(lab, tmp_path, api_port=0, business_traffic=True) as deployment:
        started = time.monotonic()

        def segments() -> list[dict]:
            return httpx.get(f"{deployment.api_url}/segments", params={"limit": 0}, timeout=30).json()["segments"]

        wait_until(lambda: any(s["blocks"] for s in segments()), interval=1, what="a first segment paired")
        first_s = time.monotonic() - started
        seen: list[dict] = []

        def end_to_end() -> dict[str, int]:
            """Known blocks end to end per slice, over the pairs."""
            blocks = dict.fromkeys(SLICES, 0)
            for s in seen:
                if s["kind"] == "end-to-end" and s["segment"] in PAIRS:
                    blocks[s["slice"]] += s["blocks"]
            return blocks

        def enough() -> bool:
            nonlocal seen
            seen = segments()
            return min(end_to_end().values()) >= BLOCKS

        def short() -> str:
            drops = {site: kernel_drops(lab, site) for site in deployment.sites}
            return f"{BLOCKS} blocks end to end in every slice: {end_to_end()}, capture kernel drops {drops}"

        wait_until(enough, interval=2, what=short)
        unknown = sum(s["unknown_blocks"] for s in seen)
        print(f"\nfirst segment {first_s:.1f} s after the deployment was up; {short()}; {unknown} unknown blocks")
    assert first_s < FIRST_MINUTE_S
    assert {s["segment"] for s in seen if s["kind"] == "node"} >= {"core"}  # every pair crosses it
    losing = [s for s in seen if s["lost"] or s["duplicated"]]
    assert not losing, losing
