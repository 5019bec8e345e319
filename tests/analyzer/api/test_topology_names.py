"""GET /topology and the root-cause hints name the same nodes and links for the same traced
path: both take them from analyzer.traced_links with the same address-to-site mapping."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import httpx

from analyzer.api.app import create_app
from analyzer.rootcause.engine import diagnose
from analyzer.rootcause.evidence import EvidenceBuilder
from analyzer.rootcause.hints import HintTracker
from analyzer.store.memory import WindowStore
from lab.topology import load
from tests.analyzer_support import T0, W, batch, observation, settled, window
from xnetmon.lab_sites import sites_by_address

SMALL = load("small")
NAMES = sites_by_address(SMALL)
# cnty1a -> core as the small lab routes it, traced from cnty1a's host address, and back.
UP_HOPS = (SMALL.link_address("city1a-cnty1a", "city1a"), SMALL.link_address("prov1-city1a", "prov1"),
           SMALL.link_address("core-prov1", "core"))
DOWN_HOPS = (SMALL.link_address("core-prov1", "prov1"), SMALL.link_address("prov1-city1a", "city1a"),
             SMALL.link_address("city1a-cnty1a", "cnty1a"))
UP_LINKS = {"cnty1a>city1a", "city1a>prov1", "prov1>core"}


def get(app, url: str) -> httpx.Response:
    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://analyzer") as client:
            return await client.get(url)

    return asyncio.run(call())


def test_the_apis_links_and_a_hints_suspects_name_the_same_traced_path_alike():
    store = WindowStore({}, interval_s=W / 1e9, catch_up_s=0)
    now = settled(T0)
    builder = EvidenceBuilder(store, NAMES, clock=lambda: now)
    tracker = HintTracker()
    app = create_app(store, token=None, hints=tracker.hints, clock=lambda: now, site_names=NAMES)

    def measured(seq: int, source: str, target: str, lost: int = 0):
        return replace(window(seq, source=source, target=target, sent=100, lost=lost),
                       target_address=SMALL.loopback(target))

    traces = {"cnty1a": observation(SMALL.host_address("cnty1a"), "core", hops=UP_HOPS),
              "core": observation("core", "cnty1a", hops=DOWN_HOPS)}
    for n, seq in enumerate(range(T0, T0 + 5)):  # a healthy baseline, then cnty1a -> core loses 30%
        now = settled(seq)
        store.ingest(batch(measured(seq, "cnty1a", "core", lost=30 if n >= 3 else 0), site="cnty1a",
                           observations=(traces["cnty1a"],) if n == 0 else ()), now)
        store.ingest(batch(measured(seq, "core", "cnty1a"), site="core",
                           observations=(traces["core"],) if n == 0 else ()), now)
        epoch = builder.build(at_ns=(seq + 1) * W)
        tracker.update(diagnose(epoch), epoch.at_ns)

    topology = get(app, "/topology").json()
    links = {f"{link['a']}>{link['b']}": link for link in topology["links"]}
    up = {name for name, link in links.items() if any(p["target"] == "core" for p in link["paths"])}
    assert up == UP_LINKS
    assert {n["id"]: n["role"] for n in topology["nodes"]} == {
        "cnty1a": "site", "city1a": "router", "prov1": "router", "core": "site"}
    hints = get(app, "/hints").json()
    link_suspects = [set(h["suspects"]) for h in hints if any(">" in s for s in h["suspects"])]
    assert link_suspects == [UP_LINKS]
