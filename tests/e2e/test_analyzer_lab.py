"""The analyzer's verdicts on the lab: healthy slices read ok; starving one slice on one
link breaches that slice only, and only on the paths over that link; healing brings it back
to ok once the hysteresis and the burn-rate lookbacks let it go."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.support import wait_until
from xnetmon.allinone import lab_deployment
from xnetmon.status_view import fetch

pytestmark = [pytest.mark.root, pytest.mark.lab]

SLICES = ("best-effort", "data", "egov", "video")
# Paths between these sides cross core-prov2 (county 1x and core on one side, county 2x on the other).
WEST, EAST = {"core", "cnty1a", "cnty1b"}, {"cnty2a", "cnty2b"}


def statuses(url: str) -> dict[str, str]:
    return {s["name"]: s["status"] for s in fetch(url)}


def wait_for_statuses(url: str, condition, what: str) -> dict[str, str]:
    seen: dict[str, str] = {}

    def met() -> bool:
        nonlocal seen
        seen = statuses(url)
        return condition(seen)

    wait_until(met, interval=1, what=lambda: f"{what} (statuses: {seen})")
    return seen


def crosses(path: dict) -> bool:
    ends = {path["source"], path["target"]}
    return bool(ends & WEST) and bool(ends & EAST)


def test_starving_one_slice_on_one_link_breaches_only_that_slice_and_its_paths_there(lab, tmp_path):
    with lab_deployment(lab, tmp_path, api_port=0) as deployment:  # any free port: other runs may hold 9863
        url = deployment.api_url
        wait_for_statuses(
            url, lambda s: set(s) == set(SLICES) and all(v == "ok" for v in s.values()), "every slice reading ok"
        )
        # An on-demand probe from a named agent, as an engineer would ask the analyzer for one.
        token = (tmp_path / "token").read_text()
        asked = httpx.post(
            f"{url}/probe",
            json={"agent": "cnty1a", "target": lab.address("cnty2b"), "kind": "stamp", "slice": "egov", "count": 5},
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
        assert asked.status_code == 200, asked.text
        assert asked.json()["result"]["summary"]["received"] == 5
        refused = httpx.post(
            f"{url}/probe", json={"agent": "cnty1a", "target": lab.address("core"), "slice": "egov"}, timeout=10
        )
        assert refused.status_code == 401
        fault = lab.fault_slice_starve("core-prov2", "video")
        try:
            wait_for_statuses(url, lambda s: s["video"] == "breached", "video breaching")
            others = [s for s in fetch(url) if s["name"] != "video"]
            assert all(s["status"] == "ok" for s in others), json.dumps(others, indent=1)[:6000]
            # The slice breaches with its first path; each path has its own hysteresis, so a
            # lightly probed path over the link may follow an interval later: wait for all of them.
            by_crossing: dict[bool, set[str]] = {}

            def every_crossing_path_degraded() -> bool:
                nonlocal by_crossing
                by_crossing = {True: set(), False: set()}
                for p in fetch(url, "/paths?slice=video&limit=100")["paths"]:
                    by_crossing[crosses(p["path"])].add(p["verdict"]["status"])
                return bool(by_crossing[True]) and by_crossing[True] <= {"breached", "at-risk"}

            wait_until(
                every_crossing_path_degraded,
                interval=1,
                what=lambda: f"video paths over core-prov2 degraded ({by_crossing})",
            )
            assert by_crossing[False] == {"ok"}, by_crossing
        finally:
            lab.heal(fault)
        healed = time.monotonic()
        wait_for_statuses(url, lambda s: s["video"] == "ok", "video returning to ok after healing")
        recovery_s = time.monotonic() - healed
    # The lab policies' ticket lookback is 30 s and the hysteresis 3 intervals.
    assert recovery_s > 3


def test_two_replicas_on_the_lab_judge_the_same_windows_alike(lab, tmp_path):
    with lab_deployment(lab, tmp_path, api_port=0, replicas=2) as deployment:
        urls = (deployment.api_url, *deployment.replica_urls)
        assert len(set(urls)) == 2
        for url in urls:
            wait_for_statuses(
                url, lambda s: set(s) == set(SLICES) and all(v == "ok" for v in s.values()), f"every slice ok at {url}"
            )
        fault = lab.fault_slice_starve("core-prov2", "video")
        try:
            for url in urls:  # each replica consumes every window itself
                wait_for_statuses(url, lambda s: s["video"] == "breached", f"video breaching at {url}")
        finally:
            lab.heal(fault)
