"""GET /topology (analyzer.api.routes.topology): links between consecutive answering hops with the
paths over them, and the same names for nodes and links as the root-cause hints give the same
traced path (both take them from analyzer.traced_links with the same address-to-site mapping)."""

from __future__ import annotations

from dataclasses import replace

from analyzer.api.app import create_app
from analyzer.rootcause.engine import diagnose
from analyzer.rootcause.evidence import EvidenceBuilder
from analyzer.rootcause.hints import HintTracker
from analyzer.sla.verdicts import default_policies
from analyzer.store.memory import WindowStore
from lab.topology import load
from tests.analyzer_support import T0, W, batch, observation, settled, window
from tests.api_support import Api, call
from xnetmon.lab_sites import sites_by_address

SMALL = load("small")
NAMES = sites_by_address(SMALL)
# cnty1a -> core as the small lab routes it, traced from cnty1a's host address, and back.
UP_HOPS = (
    SMALL.link_address("city1a-cnty1a", "city1a"),
    SMALL.link_address("prov1-city1a", "prov1"),
    SMALL.link_address("core-prov1", "core"),
)
DOWN_HOPS = (
    SMALL.link_address("core-prov1", "prov1"),
    SMALL.link_address("prov1-city1a", "city1a"),
    SMALL.link_address("city1a-cnty1a", "cnty1a"),
)
UP_LINKS = {"cnty1a>city1a", "city1a>prov1", "prov1>core"}


def test_topology_links_consecutive_hops_and_names_the_paths_over_them():
    api = Api()
    api.ship(
        batch(
            window(T0),
            observations=(
                observation(hops=("fd00::a", None, "fd00::1")),
                observation(target="edge", hops=("fd00::a", "fd00::e")),
            ),
        )
    )
    topology = api.get("/topology").json()
    assert topology["observations"] == 2
    roles = {n["id"]: n["role"] for n in topology["nodes"]}
    assert roles == {"cnty1a": "site", "fd00::a": "router", "fd00::1": "target", "fd00::e": "target"}
    links = {(link["a"], link["b"]): link for link in topology["links"]}
    assert set(links) == {("cnty1a", "fd00::a"), ("fd00::a", "fd00::1"), ("fd00::a", "fd00::e")}
    assert links[("fd00::a", "fd00::1")]["hidden_hops"] == 1
    assert [p["target"] for p in links[("cnty1a", "fd00::a")]["paths"]] == ["core", "edge"]


def test_the_apis_links_and_a_hints_suspects_name_the_same_traced_path_alike():
    store = WindowStore(default_policies(), interval_s=W / 1e9, catch_up_s=0)
    now = settled(T0)
    builder = EvidenceBuilder(store, NAMES, clock=lambda: now)
    tracker = HintTracker()
    app = create_app(store, token=None, hints=tracker.hints, clock=lambda: now, site_names=NAMES)

    def measured(seq: int, source: str, target: str, lost: int = 0):
        return replace(
            window(seq, source=source, target=target, sent=100, lost=lost), target_address=SMALL.loopback(target)
        )

    traces = {
        "cnty1a": observation(SMALL.host_address("cnty1a"), "core", hops=UP_HOPS),
        "core": observation("core", "cnty1a", hops=DOWN_HOPS),
    }
    for n, seq in enumerate(range(T0, T0 + 5)):  # a healthy baseline, then cnty1a -> core loses 30%
        now = settled(seq)
        store.ingest(
            batch(
                measured(seq, "cnty1a", "core", lost=30 if n >= 3 else 0),
                site="cnty1a",
                observations=(traces["cnty1a"],) if n == 0 else (),
            ),
            now,
        )
        store.ingest(
            batch(measured(seq, "core", "cnty1a"), site="core", observations=(traces["core"],) if n == 0 else ()), now
        )
        epoch = builder.build(at_ns=(seq + 1) * W)
        tracker.update(diagnose(epoch), epoch.at_ns)

    topology = call(app, "GET", "/topology").json()
    links = {f"{link['a']}>{link['b']}": link for link in topology["links"]}
    up = {name for name, link in links.items() if any(p["target"] == "core" for p in link["paths"])}
    assert up == UP_LINKS
    assert {n["id"]: n["role"] for n in topology["nodes"]} == {
        "cnty1a": "site",
        "city1a": "router",
        "prov1": "router",
        "core": "site",
    }
    hints = call(app, "GET", "/hints").json()
    link_suspects = [set(h["suspects"]) for h in hints if any(">" in s for s in h["suspects"])]
    assert link_suspects == [UP_LINKS]
