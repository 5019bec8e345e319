"""Root-cause hints on the lab, end to end: the all-in-one deployment (agents and reflectors
on core and the four counties, the analyzer with the real inference engine, 1 s intervals),
one lab fault of each kind on a randomly chosen link or site, and the API's /hints.

For each fault (issue 7, "Evidence 1"):
- the right kind with the right suspect, or an equivalence class containing it, appears
  within 3 intervals: the hint's first_seen (the end of the interval whose evidence showed
  it) at most 3 intervals after the end of the interval the fault was made in;
- nothing is blamed on healthy parts: while the fault lasts, every hint names at least one
  part the fault touches (the faulty link in either direction and its ends; the sites and
  services a fault cuts off, which can neither ship nor answer; the old and new routes of
  a reroute);
- healing clears it: no hint naming the fault's parts remains soon after healing.

Choices, made once here:
- Random choices come from `random.Random(SEED)`; the seed is printed (set
  XNETMON_ROOTCAUSE_SEED to replay one). Links are chosen among those the probes cross.
- `down` is chosen among the links whose loss cuts probed paths (the counties' single
  uplinks): elsewhere the lab reroutes at once, which is the reroute case. A county behind
  its only link cannot be told from its link by any probe, so `node-down` of a class that
  contains the link counts as right too.
- "Kill of a reflector" stops the site's reflector process (SIGSTOP: it is there and does
  not answer, as a hung one; healing resumes it). "A broken agent" is an agent that stopped
  working (SIGSTOP of the site's agent process: no probes, no shipments, its reflector still
  answers): the analyzer must blame that agent's host ("host:SITE", probe-host), not the network.
- `congest` overloads a link with best-effort traffic; the per-slice queues keep the other
  slices whole, so "congestion" and "slice-isolation" both count as right, provided the
  hint's slices are best-effort alone. Telling the two apart needs the link's load (flows),
  which inference does not read yet. A hint that names several kinds because the evidence
  cannot tell them apart ("congestion|slice-isolation", on a loaded machine) is right when
  one of them is: it says the truth and no more.
- Faults are strong enough to be seen in one interval of 10 probes per path, and the loss
  rate (10% each way) stays below the engine's hard-failure level.

Figures (time to hint, time to clear, inference time per interval) are printed; run with -s.
"""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import dataclass, field

import httpx
import pytest

from analyzer.rootcause.model import kind_parts
from lab.lab import LabError
from lab.testing import heal_everything
from tests.support import cpu_wait_ns, wait_until
from xnetmon.allinone import LAB_INTERVAL_S, LAB_SITES, lab_deployment

pytestmark = [pytest.mark.root, pytest.mark.lab]

SEED = int(os.environ.get("XNETMON_ROOTCAUSE_SEED", time.time_ns() % 1_000_000))
HINT_WITHIN_INTERVALS = 3
CLEAR_WITHIN_INTERVALS = 15  # of inference after healing (15 s on an idle machine)
POLL_S = 0.2
FIGURES: dict[str, dict] = {}


@dataclass
class Case:
    """A fault made on the lab and what the hints should say about it."""

    name: str
    kinds: set[str]  # right kinds
    culprits: set[str]  # right suspects: a right hint names at least one
    touched: set[str] = field(default_factory=set)  # parts the fault touches: every hint names one
    slice: str | None = None  # a right hint affects this slice
    slice_alone: bool = False  # ... and no other
    link: str | None = None  # the faulty link, "a-b"
    fault_id: str = ""


def link_parts(lab, link_name: str) -> set[str]:
    link = lab.link(link_name)
    return {f"{link.a}>{link.b}", f"{link.b}>{link.a}"}


def route_parts(route) -> set[str]:
    if not route:
        return set()
    return set(route) | {f"{a}>{b}" for a, b in zip(route, route[1:])} | {f"{b}>{a}" for a, b in zip(route, route[1:])}


def probed_routes(lab) -> list[tuple[str, ...]]:
    return [lab.path(source, target) for source in LAB_SITES for target in LAB_SITES if source != target]


def crossed_links(lab) -> list[str]:
    """Links on the probed routes between the deployment's sites, by name ("a-b")."""
    return sorted(
        {lab.topology.link_between(a, b).name for route in probed_routes(lab) for a, b in zip(route, route[1:])}
    )


def inseparable_ends(lab, link_name: str) -> set[str]:
    """Ends of a link that no probed route crosses without crossing the link: a fault on both
    directions of the link and a fault in such a node look the same to every probe."""
    link = lab.link(link_name)
    routes = probed_routes(lab)

    def crosses(route) -> bool:
        return any({a, b} == {link.a, link.b} for a, b in zip(route, route[1:]))

    return {end for end in link.ends if all(crosses(r) for r in routes if end in r)}


def cut_off(lab, link_name: str) -> list[str]:
    """Probing sites that a down `link_name` leaves without any route to core."""
    from lab import routing

    return [
        site
        for site in LAB_SITES
        if site != "core" and routing.path(lab.topology, site, "core", frozenset({link_name})) is None
    ]


def link_case(name: str, lab, link_name: str, kinds: set[str]) -> Case:
    """A fault on both directions of a link: the link is right, and so are its ends that the
    probes cannot tell from it."""
    link = lab.link(link_name)
    parts = link_parts(lab, link_name)
    return Case(name, kinds, parts | inseparable_ends(lab, link_name), parts | {link.a, link.b}, link=link_name)


def make_fault(kind: str, lab, rng: random.Random) -> Case:
    links = crossed_links(lab)
    if kind == "loss":
        case = link_case("loss", lab, rng.choice(links), {"link-loss"})
        case.fault_id = lab.fault_loss(case.link, 0.10)
    elif kind == "down":
        link_name = rng.choice([name for name in links if cut_off(lab, name)])
        case = link_case("down", lab, link_name, {"link-down", "node-down"})
        for site in cut_off(lab, link_name):
            case.touched |= {site, f"host:{site}", f"service:{site}"}
        case.fault_id = lab.fault_down(link_name)
    elif kind == "congest":
        # The load is best-effort traffic, and the lab's per-slice HTB classes keep the other
        # slices' shares: they see no queue, so probes alone cannot tell this overload from a
        # starved best-effort class. Either kind is right here, scoped to best-effort only.
        case = link_case("congest", lab, rng.choice(links), {"congestion", "slice-isolation"})
        case.slice, case.slice_alone = "best-effort", True
        case.fault_id = lab.fault_congest(case.link)
    elif kind == "slice-starve":
        case = link_case("slice-starve", lab, rng.choice(links), {"slice-isolation"})
        case.slice = rng.choice(["video", "egov", "data", "best-effort"])
        case.fault_id = lab.fault_slice_starve(case.link, case.slice)
    elif kind == "reroute":
        pairs = [(s, d) for s in LAB_SITES for d in LAB_SITES if s < d]
        rng.shuffle(pairs)
        for source, destination in pairs:
            before = lab.path(source, destination)
            try:
                fault_id = lab.fault_reroute(source, destination)
            except LabError:  # no alternate route between these two: try another pair
                continue
            after = lab.path(source, destination)
            break
        left = route_parts(before) - route_parts(after)
        case = Case(
            "reroute",
            {"path-change"},
            left | {source, destination},
            route_parts(before) | route_parts(after),
            fault_id=fault_id,
        )
    elif kind == "delay":
        case = link_case("delay", lab, rng.choice(links), {"latency-shift"})
        case.fault_id = lab.fault_delay(case.link, 20)
    elif kind == "reflector":
        site = rng.choice(LAB_SITES)
        case = Case("kill of a reflector", {"reflector-down"}, {f"service:{site}"}, {f"service:{site}"})
        case.fault_id = lab.fault_kill(site, "xnetmon reflect", signal="STOP")
    elif kind == "agent":
        site = rng.choice(LAB_SITES)
        case = Case("broken agent", {"probe-host"}, {f"host:{site}"}, {f"host:{site}"})
        case.fault_id = lab.fault_kill(site, "xnetmon agent", signal="STOP")
    else:
        raise ValueError(kind)
    return case


def hints(url: str) -> list[dict]:
    return httpx.get(f"{url}/hints", timeout=5).json()


def is_right(case: Case, hint: dict) -> bool:
    return (
        bool(set(kind_parts(hint["kind"])) & case.kinds)
        and bool(set(hint["suspects"]) & case.culprits)
        and (case.slice is None or case.slice in hint["slices"])
        and (not case.slice_alone or set(hint["slices"]) == {case.slice})
    )


def wait_steady(deployment) -> None:
    """Until every agent ships, every slice reads ok and no hint is shown (agents report a
    scheduling lag as long as their start delay in their first windows)."""
    url = deployment.api_url
    seen: dict = {}

    def steady() -> bool:
        seen["agents"] = sorted(a["site"] for a in httpx.get(f"{url}/healthz", timeout=5).json()["agents"])
        seen["slices"] = {s["name"]: s["status"] for s in httpx.get(f"{url}/slices", timeout=5).json()}
        return len(seen["agents"]) == len(LAB_SITES) and set(seen["slices"].values()) == {"ok"}

    wait_until(steady, interval=1, what=lambda: f"the deployment settling (last seen: {seen})")
    wait_quiet(deployment)


def inferred_through_ns(deployment) -> int:
    """The end of the last interval inference has finished with: the analyzer's own clock,
    which a loaded machine slows down together with everything it judges."""
    recent = deployment.inference.recent
    return recent[-1][0] if recent else 0


def intervals_since(deployment, through_ns: int) -> float:
    return (inferred_through_ns(deployment) - through_ns) / (LAB_INTERVAL_S * 1e9)


class DeploymentWait:
    """The time the deployment waited for a CPU since this was made, in whole intervals: the
    slowest of its agents and reflectors (they work side by side) and then the analyzer (in
    this process). A loaded machine delays the evidence by that much, not the engine."""

    def __init__(self, lab, deployment) -> None:
        pids = [pid for site in deployment.sites for pid, _argv, _cwd in lab.processes_matching(site, "xnetmon")]
        self._started = {pid: cpu_wait_ns(pid) for pid in pids}
        self._own = cpu_wait_ns()

    def intervals(self) -> int:
        sites_ns = max((max(0, cpu_wait_ns(pid) - ns) for pid, ns in self._started.items()), default=0)
        return math.ceil((sites_ns + cpu_wait_ns() - self._own) / (LAB_INTERVAL_S * 1e9))


def recent_diagnoses(deployment, epochs: int = 6) -> str:
    """What inference said in the last intervals, and the latest evidence, for failure messages."""
    lines = []
    for at_ns, diagnoses, _ in list(deployment.inference.recent)[-epochs:]:
        said = "; ".join(f"{d.kind} {','.join(d.suspects)} {','.join(d.slices)} {d.confidence}" for d in diagnoses)
        lines.append(f"  {at_ns}: {said or '-'}")
    paths = deployment.inference.last_epoch.paths
    lossy = sum(1 for p in paths if p.lost)
    slower = sum(1 for p in paths if p.delay_s and p.baseline_delay_s and p.delay_s > p.baseline_delay_s + 0.003)
    unknown = sum(1 for p in paths if p.baseline_delay_s is None)
    lines.append(
        f"  latest evidence: {len(paths)} paths, {lossy} lossy, {slower} slower than their baseline, "
        f"{unknown} without a baseline"
    )
    return "\n".join(lines)


def wait_quiet(deployment) -> None:
    """Until no hint is shown for 3 intervals of inference in a row (a clean start for the next fault)."""
    url = deployment.api_url
    quiet_since = None

    def quiet_for_3_intervals() -> bool:
        nonlocal quiet_since
        if hints(url):
            quiet_since = None
        elif quiet_since is None:
            quiet_since = inferred_through_ns(deployment)
        return quiet_since is not None and intervals_since(deployment, quiet_since) >= 3

    wait_until(quiet_for_3_intervals, interval=POLL_S, what=lambda: f"hints going quiet: {hints(url)}")


@pytest.fixture(scope="module")
def deployment(small_lab, tmp_path_factory):
    print(f"\nroot-cause lab test seed {SEED} (XNETMON_ROOTCAUSE_SEED={SEED} replays it)")
    heal_everything(small_lab)
    with lab_deployment(small_lab, tmp_path_factory.mktemp("rootcause"), api_port=0) as deployed:
        wait_steady(deployed)
        yield deployed
        inference = deployed.inference
        print(
            f"\ninference: {inference.epochs} intervals, {inference.failures} failures, "
            f"worst {inference.worst_seconds * 1000:.0f} ms per interval"
        )
    print("\nfault            time to hint   time to clear   hint")
    for name, figures in FIGURES.items():
        print(
            f"{name:<16} {figures['hint_s']:>8.1f} s   {figures.get('clear_s', float('nan')):>9.1f} s   "
            f"{figures['hint']}"
        )


KINDS = ["loss", "down", "congest", "slice-starve", "reroute", "delay", "reflector", "agent"]


@pytest.mark.parametrize("kind", KINDS)
def test_each_fault_gets_the_right_hint_within_3_intervals_blames_nothing_healthy_and_clears(deployment, lab, kind):
    url = deployment.api_url
    wait_quiet(deployment)
    rng = random.Random(f"{SEED}-{kind}")
    made_ns = time.time_ns()
    started = time.monotonic()
    waited = DeploymentWait(lab, deployment)
    case = make_fault(kind, lab, rng)
    print(f"\n{case.name}: {lab.state().fault(case.fault_id).summary}")
    seen = []

    def right_hint() -> dict | None:
        nonlocal seen
        seen = hints(url)
        return next((h for h in seen if is_right(case, h)), None)

    # How soon is judged below, by the hint's own interval: the wait only bounds a failure.
    right = wait_until(
        right_hint,
        interval=POLL_S,
        what=lambda: (
            f"{case.name}: a {case.kinds} hint naming {sorted(case.culprits)}; hints: {seen}\n"
            f"inference by interval:\n{recent_diagnoses(deployment)}"
        ),
    )
    hint_s = time.monotonic() - started
    FIGURES[kind] = {"hint_s": hint_s, "hint": f"{right['kind']} {','.join(right['suspects'])}"}
    print(
        f"  hint after {hint_s:.1f} s: {right['kind']} {right['suspects']} {right['slices']} "
        f"({right['confidence']}): {right['evidence'][:1]}"
    )
    # Within 3 intervals of the one the fault was made in (that one may hold a moment of it),
    # plus those the machine kept the deployment from a CPU.
    interval_ns = int(LAB_INTERVAL_S * 1e9)
    made_interval_end = (made_ns // interval_ns + 1) * interval_ns
    late = waited.intervals()
    assert right["first_seen_ns"] - made_interval_end <= (HINT_WITHIN_INTERVALS + late) * interval_ns, (
        f"{case.name}: hint first seen {(right['first_seen_ns'] - made_interval_end) / interval_ns:.0f} intervals "
        f"after the fault's, {late} of them excused for the machine"
    )
    # While the fault lasts (3 intervals of inference), nothing is blamed on parts it does not touch.
    watched_from = inferred_through_ns(deployment)

    def watched_3_intervals() -> bool:
        wrong = [h for h in hints(url) if not set(h["suspects"]) & case.touched]
        assert not wrong, (
            f"{case.name}: hints blaming healthy parts: {wrong}\ninference by interval:\n{recent_diagnoses(deployment)}"
        )
        return intervals_since(deployment, watched_from) >= 3

    wait_until(watched_3_intervals, interval=POLL_S, what="3 intervals of inference during the fault")
    lab.heal(case.fault_id)
    healed = time.monotonic()
    healed_through = inferred_through_ns(deployment)

    def cleared() -> bool:
        if not any(set(h["suspects"]) & case.touched for h in hints(url)):
            return True
        assert intervals_since(deployment, healed_through) < CLEAR_WITHIN_INTERVALS, (
            f"{case.name}: hints stay after healing: {hints(url)}"
        )
        return False

    wait_until(cleared, interval=POLL_S, what=f"{case.name}: hints clearing after healing")
    FIGURES[kind]["clear_s"] = time.monotonic() - healed
    print(f"  cleared {FIGURES[kind]['clear_s']:.1f} s after healing")
