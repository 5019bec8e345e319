"""Epochs built from a real WindowStore: components named after the lab's sites, reverse
paths from the far agent's trace, baselines frozen while degraded, path changes held for a
while, host health from self-telemetry, and the time one epoch takes with 5,000 paths."""

from __future__ import annotations

from dataclasses import replace

import pytest

from analyzer.rootcause import evidence as ev
from analyzer.rootcause.evidence import EvidenceBuilder
from analyzer.sla.verdicts import default_policies
from analyzer.store.memory import WindowStore
from collector.contract.records import PathKey
from lab.topology import load
from tests.analyzer_support import T0, W, batch, health, observation, settled, window
from tests.support import Stopwatch
from xnetmon.lab_sites import sites_by_address

SMALL = load("small")
NAMES = sites_by_address(SMALL)


def at(site: str, link: str | None = None) -> str:
    """An address of `site`: its end of `link`, else its loopback."""
    return SMALL.link_address(link, site) if link else SMALL.loopback(site)


# cnty1a -> core as the small lab routes it, and back.
UP_HOPS = (at("city1a", "city1a-cnty1a"), at("prov1", "prov1-city1a"), at("core", "core-prov1"))
DOWN_HOPS = (at("prov1", "core-prov1"), at("city1a", "prov1-city1a"), at("cnty1a", "city1a-cnty1a"))
UP_ROUTE = ("cnty1a", "cnty1a>city1a", "city1a", "city1a>prov1", "prov1", "prov1>core", "core")


def w(seq: int, *, source="cnty1a", target="core", slice_="video", kind="stamp", **fields):
    base = window(
        seq,
        source=source,
        target=target,
        slice_=slice_,
        kind=kind,
        sent=fields.pop("sent", 10),
        lost=fields.pop("lost", 0),
    )
    return replace(base, target_address=SMALL.loopback(target), **fields)


class Feed:
    """A store fed interval by interval, and the builder over it."""

    def __init__(self, names=NAMES) -> None:
        self.store = WindowStore(default_policies(), interval_s=W / 1e9, catch_up_s=0)
        self.now = settled(T0)
        self.builder = EvidenceBuilder(self.store, names, clock=lambda: self.now)

    def ship(self, site: str, *windows, observations=(), health_=None) -> None:
        self.store.ingest(batch(*windows, site=site, observations=tuple(observations), health=health_), self.now)

    def epoch(self, seq: int):
        """The epoch of interval `seq`, as if the store had just closed it."""
        self.now = settled(seq)
        return self.builder.build(at_ns=(seq + 1) * W)


def traced(source="cnty1a", target="core", hops=UP_HOPS, slice_="video", reached=True):
    return replace(observation(source=source, target=target, slice_=slice_, hops=hops), reached=reached)


def test_components_are_named_after_sites_with_the_pseudo_components_and_the_reverse_trace():
    feed = Feed()
    feed.ship("cnty1a", w(T0), w(T0, kind="icmp"), observations=[traced()])
    feed.ship("core", w(T0, source="core", target="cnty1a"), observations=[traced("core", "cnty1a", DOWN_HOPS)])
    paths = {p.path_id: p for p in feed.epoch(T0).paths}
    stamp, echo = paths["cnty1a>core/video/stamp"], paths["cnty1a>core/video/icmp"]
    assert stamp.forward == ("host:cnty1a", *UP_ROUTE, "service:core")
    assert echo.forward == ("host:cnty1a", *UP_ROUTE)  # the kernel answers echo: no service
    assert stamp.reverse == ("core", "core>prov1", "prov1", "prov1>city1a", "city1a", "city1a>cnty1a", "cnty1a")
    assert stamp.target_site == "core" and stamp.slice == "video" and stamp.sent == 10
    assert paths["core>cnty1a/video/stamp"].reverse == UP_ROUTE


def test_without_a_declared_topology_sites_are_learnt_from_targets_and_routers_stay_addresses():
    feed = Feed(names=None)
    feed.ship("cnty1a", w(T0), observations=[traced(hops=(UP_HOPS[0], None, SMALL.loopback("core")))])
    feed.ship("core", w(T0, source="core", target="cnty1a"))
    [first] = feed.epoch(T0).paths  # core>cnty1a was never traced
    router = UP_HOPS[0]
    # The silent hop is skipped: the link joins the answering neighbours.
    assert first.forward == (
        "host:cnty1a",
        "cnty1a",
        f"cnty1a>{router}",
        router,
        f"{router}>core",
        "core",
        "service:core",
    )


def test_untraced_and_stale_paths_are_left_out_and_the_closed_interval_is_the_one_used():
    feed = Feed()
    feed.ship("cnty1a", w(T0), w(T0, target="cnty2a"), observations=[traced()])
    assert [p.path_id for p in feed.epoch(T0).paths] == ["cnty1a>core/video/stamp"]  # cnty2a never traced
    feed.ship("cnty1a", w(T0 + 1, lost=4))
    feed.ship("cnty1a", w(T0 + 2, lost=7))  # already the next interval's window when T0+1 closes
    [path] = feed.builder.build(at_ns=(T0 + 2) * W).paths
    assert path.lost == 4
    feed.ship("cnty1a", w(T0 + 3, target="cnty2a"))  # cnty1a ships on, but no longer for core
    for seq in range(T0 + 3, T0 + 7):
        feed.ship("core", w(seq, source="core", target="cnty1a"))
        feed.ship("cnty1a", w(seq, target="cnty2a"))
        paths = feed.epoch(seq).paths
    assert all(p.source == "core" for p in paths)  # cnty1a>core stale: nothing to say about now


def test_a_silent_agents_paths_come_with_nothing_sent_so_its_hint_can_name_their_slices():
    feed = Feed()
    feed.ship("cnty1a", w(T0, lost=2), w(T0, slice_="egov"), observations=[traced(), traced(slice_="egov")])
    for seq in range(T0 + 1, T0 + 5):
        feed.ship("core", w(seq, source="core", target="cnty1a"))
        epoch = feed.epoch(seq)
    assert not {h.site: h for h in epoch.hosts}["cnty1a"].healthy
    mine = sorted((p.slice, p.sent, p.lost, p.delay_s) for p in epoch.paths if p.source == "cnty1a")
    assert mine == [("egov", 0, 0, None), ("video", 0, 0, None)]


def test_a_trace_that_did_not_reach_keeps_the_route_of_the_last_one_that_did():
    feed = Feed()
    feed.ship("cnty1a", w(T0), observations=[traced()])
    feed.epoch(T0)
    feed.ship("cnty1a", w(T0 + 1, lost=10), observations=[traced(hops=(UP_HOPS[0], None, None), reached=False)])
    [path] = feed.epoch(T0 + 1).paths
    assert path.forward[1:-1] == UP_ROUTE and not path.path_changed


def test_silent_hops_on_the_known_route_are_lost_trace_probes_not_a_new_route():
    feed = Feed()
    feed.ship("cnty1a", w(T0), observations=[traced()])
    feed.epoch(T0)
    feed.ship("cnty1a", w(T0 + 1, lost=2), observations=[traced(hops=(UP_HOPS[0], None, UP_HOPS[2]))])
    [path] = feed.epoch(T0 + 1).paths
    assert path.forward[1:-1] == UP_ROUTE and not path.path_changed


def test_loss_per_direction_only_when_the_reflector_told_it():
    feed = Feed()
    told = replace(w(T0, lost=3), lost_reverse=1, lost_forward=2)
    untold = replace(w(T0, kind="icmp", lost=3), lost_forward=0, lost_unknown=3)
    feed.ship("cnty1a", told, untold, observations=[traced()])
    paths = {p.path_id: p for p in feed.epoch(T0).paths}
    assert (paths["cnty1a>core/video/stamp"].forward_lost, paths["cnty1a>core/video/stamp"].reverse_lost) == (2, 1)
    icmp = paths["cnty1a>core/video/icmp"]
    assert (icmp.lost, icmp.forward_lost, icmp.reverse_lost, icmp.loss) == (3, None, None, 0.3)


def test_baseline_is_the_median_of_healthy_windows_and_freezes_while_degraded():
    feed = Feed()
    delays_ms = [4, 5, 6, 5, 4]
    for i, delay in enumerate(delays_ms):
        feed.ship(
            "cnty1a",
            w(T0 + i, rtt_p50_ns=delay * 1_000_000, pdv_p99_ns=1_000_000),
            observations=[traced()] if i == 0 else (),
        )
        [path] = feed.epoch(T0 + i).paths
    assert path.baseline_delay_s == pytest.approx(0.005) and path.baseline_jitter_s == pytest.approx(0.001)
    assert path.delay_s == pytest.approx(0.004)
    for i in range(5, 25):  # +200 ms: degraded, never learnt
        feed.ship("cnty1a", w(T0 + i, rtt_p50_ns=205_000_000, pdv_p99_ns=40_000_000))
        [path] = feed.epoch(T0 + i).paths
    assert path.delay_s == pytest.approx(0.205) and path.baseline_delay_s == pytest.approx(0.005)
    assert path.jitter_s == pytest.approx(0.040) and path.baseline_jitter_s == pytest.approx(0.001)
    assert not path.path_changed


def test_a_new_route_counts_as_changed_for_a_while_with_its_delay_step_then_is_learnt_afresh():
    feed = Feed()
    for i in range(4):
        feed.ship("cnty1a", w(T0 + i, rtt_p50_ns=4_000_000), observations=[traced()] if i == 0 else ())
        feed.epoch(T0 + i)
    other = (at("city1a", "city1a-cnty1a"), at("prov2", "prov2-city1a"), at("core", "core-prov2"))
    seen = []
    for i in range(4, 4 + ev.CHANGE_HOLD_EPOCHS + ev.BASELINE_MIN_WINDOWS + 1):
        feed.ship("cnty1a", w(T0 + i, rtt_p50_ns=9_000_000), observations=[traced(hops=other)] if i == 4 else ())
        [path] = feed.epoch(T0 + i).paths
        seen.append((path.path_changed, path.delay_delta_s, path.baseline_delay_s))
        if i == 4:
            assert path.previous_forward == ("host:cnty1a", *UP_ROUTE, "service:core")
    assert "prov2" in path.forward and "prov1" not in path.forward
    assert path.previous_forward is None and path.previous_reverse is None
    hold = seen[: ev.CHANGE_HOLD_EPOCHS]
    assert all(changed and delta == pytest.approx(0.005) for changed, delta, _ in hold)
    after = seen[ev.CHANGE_HOLD_EPOCHS :]
    assert not any(changed for changed, _, _ in after)
    assert after[-1][2] == pytest.approx(0.009)  # the new route's own baseline


def test_host_health_from_silence_lag_and_growing_error_counters():
    feed = Feed()
    calm = health("cnty1a")
    feed.ship("cnty1a", w(T0), health_=calm, observations=[traced()])
    feed.ship("core", w(T0, source="core", target="cnty1a"), health_=health("core"))
    feed.ship(
        "cnty2a",
        w(T0, source="cnty2a", target="core"),
        health_=replace(health("cnty2a"), scheduling_lag_p99_ns=1_600_000_000),
    )
    hosts = {h.site: h for h in feed.epoch(T0).hosts}
    assert hosts["cnty1a"].healthy and hosts["core"].healthy
    assert not hosts["cnty2a"].healthy and hosts["cnty2a"].reason == "scheduling lag p99 1.60 s"

    def next_epoch(seq: int, **cnty1a_counters) -> dict:
        feed.ship("cnty1a", w(seq), health_=replace(calm, **cnty1a_counters))
        feed.ship("core", w(seq, source="core", target="cnty1a"), health_=health("core"))
        return {h.site: h for h in feed.epoch(seq).hosts}

    # 40 of 100 sends failing: no route to some targets, the network's doing.
    assert next_epoch(T0 + 1, probes_sent_total=1100, send_errors_total=40)["cnty1a"].healthy
    failing = next_epoch(T0 + 2, probes_sent_total=1200, send_errors_total=120)["cnty1a"]
    assert failing.reason == "send errors 80 of 100 probes since the last interval"
    # A few replies dropped by a busy host's sockets: its own losses, not a fault of its own.
    assert next_epoch(T0 + 3, probes_sent_total=1300, send_errors_total=120, socket_drops_total=7)["cnty1a"].healthy
    dropping = next_epoch(T0 + 4, probes_sent_total=1400, send_errors_total=120, socket_drops_total=27)["cnty1a"]
    assert dropping.reason == "socket drops 20 of 100 probes since the last interval"

    for seq in range(T0 + 5, T0 + 9):  # cnty1a stops shipping; core still reaches it
        feed.ship("core", w(seq, source="core", target="cnty1a"), health_=health("core"))
        hosts = {h.site: h for h in feed.epoch(seq).hosts}
    assert not hosts["cnty1a"].healthy and hosts["cnty1a"].reason.startswith("no shipment for ")
    assert hosts["core"].healthy


def test_a_silent_agent_whose_site_the_network_does_not_reach_is_not_blamed():
    feed = Feed()
    feed.ship("cnty1a", w(T0), observations=[traced()])
    feed.ship("core", w(T0, source="core", target="cnty1a"), observations=[traced("core", "cnty1a", DOWN_HOPS)])
    for seq in range(T0 + 1, T0 + 5):  # cnty1a cut off: silent, and core's probes to it are lost
        feed.ship("core", w(seq, source="core", target="cnty1a", lost=10))
        epoch = feed.epoch(seq)
    assert all(h.healthy for h in epoch.hosts)
    assert [p.path_id for p in epoch.paths] == ["core>cnty1a/video/stamp"]


def test_an_epoch_of_5000_paths_builds_in_well_under_an_interval():
    feed = Feed(names=None)
    sites = [f"s{i}" for i in range(250)]
    observations, windows = [], []
    for i, source in enumerate(sites):
        for k in range(5):
            target = sites[(i + 1 + k * 37) % len(sites)]
            for slice_ in ("video", "egov", "data", "best-effort"):
                hops = (f"fd00::{i:x}:{k:x}", f"fd00::{k:x}:ffff", f"fd00::{(i + k) % 250:x}")
                observations.append(observation(source=source, target=target, slice_=slice_, hops=hops))
                windows.append(window(T0, source=source, target=target, slice_=slice_))
    feed.store.ingest(batch(*windows, observations=tuple(observations)), feed.now)
    assert len(feed.store.path_keys()) == 5000
    timings = []
    for seq in range(T0, T0 + 4):
        if seq > T0:
            feed.store.ingest(
                batch(*(replace(x, seq=seq, start_ns=seq * W, end_ns=(seq + 1) * W) for x in windows)), settled(seq)
            )
        watch = Stopwatch()  # the machine's share excused
        epoch = feed.epoch(seq)
        timings.append(watch.seconds())
    assert len(epoch.paths) == 5000
    print(f"evidence for 5,000 paths: first epoch {timings[0] * 1000:.0f} ms, then {max(timings[1:]) * 1000:.0f} ms")
    assert max(timings[1:]) < 1.0


def test_a_forgotten_path_leaves_the_builder_memory(monkeypatch):
    feed = Feed()
    monkeypatch.setattr(ev, "PRUNE_EVERY_EPOCHS", 1)
    feed.ship("cnty1a", w(T0), observations=[traced()])
    feed.epoch(T0)
    assert PathKey("cnty1a", "core", "video", "stamp") in feed.builder._memory
    feed.store = feed.builder.store = WindowStore(default_policies(), interval_s=W / 1e9, catch_up_s=0)
    feed.epoch(T0 + 1)
    assert feed.builder._memory == {}


def national_store(lossy_city: int | None = None, seq: int = T0) -> tuple[list, list]:
    """5,000 paths over a tree (250 counties under 25 cities under 5 provinces under a core):
    each county probes 5 others in 4 slices. Windows of interval `seq`; the paths leaving or
    reaching `lossy_city`'s first county lose 3 of 10 probes."""

    def chain(county: int) -> list[str]:
        return [f"fd00::c{county:x}", f"fd00::a{county // 10:x}", f"fd00::b{county // 50:x}", "fd00::1"]

    observations, windows = [], []
    for i in range(250):
        for k in range(5):
            j = (i + 1 + k * 37) % 250
            up, down = chain(i), chain(j)
            hops = tuple(up[1:] + down[::-1][1:]) if up[-2] != down[-2] else tuple(up[1:3] + down[::-1][2:])
            lossy = lossy_city is not None and lossy_city * 10 in (i, j)
            for slice_ in ("video", "egov", "data", "best-effort"):
                observations.append(observation(source=f"fd00::c{i:x}", target=f"s{j}", slice_=slice_, hops=hops))
                windows.append(
                    replace(
                        window(seq, source=f"s{i}", target=f"s{j}", slice_=slice_, lost=3 if lossy else 0),
                        target_address=f"fd00::c{j:x}",
                    )
                )
    return observations, windows


def test_inference_with_the_real_engine_keeps_up_with_5000_paths():
    from analyzer.rootcause.engine import diagnose
    from analyzer.rootcause.hints import HintTracker

    feed = Feed(names={f"fd00::c{i:x}": f"s{i}" for i in range(250)})
    tracker = HintTracker()
    timings = []
    for n, seq in enumerate(range(T0, T0 + 6)):
        observations, windows = national_store(lossy_city=3 if n >= 4 else None, seq=seq)
        feed.store.ingest(batch(*windows, observations=tuple(observations) if n == 0 else ()), settled(seq))
        watch = Stopwatch()  # the machine's share excused
        epoch = feed.epoch(seq)
        hints = tracker.update(diagnose(epoch), epoch.at_ns)
        timings.append(watch.seconds())
    assert len(epoch.paths) == 5000
    assert [h.kind for h in hints] and all("s30" in h.suspects for h in hints), hints  # the county, its only site
    print(
        f"evidence and inference, 5,000 paths: healthy {max(timings[1:4]) * 1000:.0f} ms, "
        f"with a lossy county {max(timings[4:]) * 1000:.0f} ms per interval"
    )
    assert max(timings[1:]) < 2.0


def test_a_changed_route_back_marks_the_path_changed_with_the_reverse_route_it_left():
    feed = Feed()
    back_route = ("core", "core>prov1", "prov1", "prov1>city1a", "city1a", "city1a>cnty1a", "cnty1a")
    feed.ship("cnty1a", w(T0), observations=[traced()])
    feed.ship("core", w(T0, source="core", target="cnty1a"), observations=[traced("core", "cnty1a", DOWN_HOPS)])
    feed.epoch(T0)
    detour = (at("prov2", "core-prov2"), at("city1a", "prov2-city1a"), at("cnty1a", "city1a-cnty1a"))
    feed.ship("cnty1a", w(T0 + 1))
    feed.ship("core", w(T0 + 1, source="core", target="cnty1a"), observations=[traced("core", "cnty1a", detour)])
    paths = {p.path_id: p for p in feed.epoch(T0 + 1).paths}
    there, back = paths["cnty1a>core/video/stamp"], paths["core>cnty1a/video/stamp"]
    assert there.path_changed and there.previous_forward is None and there.previous_reverse == back_route
    assert "prov2" in there.reverse
    assert back.path_changed and back.previous_forward == ("host:core", *back_route, "service:cnty1a")


def test_an_agent_that_stopped_shipping_before_it_counts_as_silent_has_its_older_windows_left_out():
    # cut off behind its link: its last windows are from before the outage and would clear the link
    feed = Feed()
    feed.ship("cnty1a", w(T0), observations=[traced()])
    feed.ship("core", w(T0, source="core", target="cnty1a"), observations=[traced("core", "cnty1a", DOWN_HOPS)])
    assert {p.source for p in feed.epoch(T0).paths} == {"cnty1a", "core"}
    feed.ship("core", w(T0 + 1, source="core", target="cnty1a", lost=10))
    epoch = feed.epoch(T0 + 1)
    assert {h.site: h.healthy for h in epoch.hosts}["cnty1a"]  # not silent for long yet
    assert [p.source for p in epoch.paths] == ["core"]


def test_losses_an_agent_counts_as_its_own_are_taken_off_its_paths():
    # A busy host: its sockets dropped 3 replies this interval; the kernel also refused a send,
    # which is a missing route, the network's loss, and stays.
    feed = Feed()
    calm = health("cnty1a")
    feed.ship("cnty1a", w(T0), w(T0, target="cnty2a"), health_=calm, observations=[traced()])
    feed.epoch(T0)
    lossy = w(T0 + 1, lost=4, lost_forward=1, lost_reverse=3)
    other = w(T0 + 1, target="cnty2a", lost=2, lost_forward=0, lost_reverse=2)
    busy = replace(
        calm,
        probes_sent_total=calm.probes_sent_total + 100,
        send_errors_total=calm.send_errors_total + 1,
        socket_drops_total=calm.socket_drops_total + 3,
    )
    feed.ship("cnty1a", lossy, other, health_=busy)
    (path,) = [p for p in feed.epoch(T0 + 1).paths if p.target == "core"]
    assert (path.lost, path.forward_lost, path.reverse_lost) == (1, 1, 0)


def test_every_agent_silent_at_once_blames_none_of_them(caplog):
    # The all-in-one's agents share the machine (and the analyzer): a stall of it silences all.
    feed = Feed()
    feed.ship("cnty1a", w(T0), observations=[traced()], health_=health("cnty1a"))
    feed.ship("core", w(T0, source="core", target="cnty1a"), health_=health("core"))
    feed.epoch(T0)
    with caplog.at_level("WARNING", logger="analyzer.rootcause.evidence"):
        hosts = feed.epoch(T0 + 4).hosts  # nobody shipped for 3 intervals
    assert [h.healthy for h in hosts] == [True, True]
    assert "every agent (2) silent at once" in caplog.text
    feed.ship("core", w(T0 + 5, source="core", target="cnty1a"), health_=health("core"))
    hosts = {h.site: h for h in feed.epoch(T0 + 5).hosts}  # core is back, cnty1a still silent: its own
    assert hosts["core"].healthy and not hosts["cnty1a"].healthy
