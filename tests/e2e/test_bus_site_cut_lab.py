"""One site cut off from the bus by the network, then healed (issue 14): the all-in-one on the
`small` lab, real agents publishing to nats-server in the core site, and inside cnty1a's
namespace ip6tables dropping every packet to and from the bus port for CUT_S seconds. The
bus, the analyzer and the other sites carry on; only cnty1a's agent is cut off, so it notices
by its pings, spools, and delivers once the path is back.

Counted, window by window:
- the site's spool held its windows during the cut and is empty after it;
- the stream holds every window once, in order per path, and the agent's own per-path probe
  counts agree with it (nothing lost between the agent and the stream);
- the analyzer took every window of the stream once (`windows_ingested` equals the windows in
  the stream, nothing refused as too old) and never lost the bus itself;
- the slice intervals of the cut were judged on time, as the store's design says, with the
  other sites' windows and none of cnty1a's (a few may close empty where every agent stalled
  at once on a loaded host): its windows from the cut arrived after their intervals closed
  and count as `late`;
- each of cnty1a's paths judged every window of its own once, the late ones included: its
  tracker's intervals equal its windows in the stream (after its warm-up) up to the newest
  it was fed.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from bench.lab_bus_outage import (
    SHIPPED_WITHIN_INTERVALS,
    ClosedIntervals,
    delivery,
    lab_agent_reader,
    read_window_batches,
    spooled,
)
from bench.soak.ledger import Ledger, sent_totals
from tests.support import DEADLINE_S, wait_until
from xnetmon import bus_setup
from xnetmon.allinone import BUS_PORT, LAB_SITES, lab_deployment

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.tool("nats-server"), pytest.mark.tool("ip6tables")]

CUT_SITE = "cnty1a"
CUT_S = 30.0  # the cut's length: a duration under test
BEFORE_S = 5.0  # steady load before the cut: a duration under test
READING_TRIES = 20
RULE_COMMENT = "xnetmon:bus-cut"
ANALYZER_COUNTERS = ("windows_ingested", "windows_duplicate", "windows_stale", "windows_late")
# Both ways: the agent's packets to the bus, and the bus's to the agent.
CUT_RULES = (("OUTPUT", "--dport"), ("INPUT", "--sport"))


def bus_rules(action: str) -> list[list[str]]:
    return [
        ["ip6tables", "-w", action, chain, "-p", "tcp", port_match, str(BUS_PORT), "-m", "comment", "--comment",
         RULE_COMMENT, "-j", "DROP"]
        for chain, port_match in CUT_RULES
    ]  # fmt: skip


def cut(lab) -> None:
    for rule in bus_rules("-A"):
        lab.exec(CUT_SITE, rule, check=True)


def heal(lab) -> None:
    for rule in bus_rules("-D"):
        lab.exec(CUT_SITE, rule)  # a rule already gone is fine: healed either way


def timely_reading(read_agent, site: str, within_s: float) -> tuple[str | None, tuple[float, float]]:
    """The agent's /metrics and when it was asked and answered, from a request answered
    within `within_s` (tried again otherwise): the ledger places the reading among the
    windows that ended between the two, fewer the quicker the answer."""
    for _ in range(READING_TRIES):
        started = time.time()
        text = read_agent(site)
        if text is not None and time.time() - started <= within_s:
            break
    return text, (started, time.time())


def test_a_site_cut_off_from_the_bus_delivers_every_window_once_after_the_heal(lab, tmp_path):
    read_agent = lab_agent_reader(lab)
    late_by_site: Counter[str] = Counter()
    offered: Counter[tuple] = Counter()  # (path, seq) -> times the intake offered it to the store
    taken: Counter[str] = Counter()  # windows accepted, and dropped as duplicates
    try:
        with lab_deployment(lab, tmp_path, LAB_SITES, api_port=0) as deployment:
            assert deployment.restarts is not None and deployment.bus_server is not None  # the lab shape
            store, intake = deployment.restarts.analyzer.store, deployment.restarts.intake
            interval_ns = store.interval_ns
            closed = ClosedIntervals.on(store)
            ingest = store.ingest

            def counting_ingest(batch, now_ns):
                with store._lock:  # the tap's counts and the store's agree at any instant
                    result = ingest(batch, now_ns)
                    late_by_site[batch.site] += result.late
                    offered.update((w.key, w.seq) for w in batch.windows)
                    taken["accepted"] += result.accepted
                    taken["duplicates"] += result.duplicates
                return result

            store.ingest = counting_ingest  # type: ignore[method-assign]
            sites = deployment.sites
            wait_until(lambda: {a.site for a in store.agents()} >= set(sites), what="every agent reporting")
            time.sleep(BEFORE_S)
            disconnections = intake.disconnections_total
            cut_ns = time.time_ns()
            cut(lab)
            deepest, ends = 0.0, time.monotonic() + CUT_S
            while time.monotonic() < ends:
                deepest = max(deepest, spooled(read_agent, [CUT_SITE])[CUT_SITE] or 0.0)
                time.sleep(min(2.0, max(0.0, ends - time.monotonic())))
            heal(lab)
            healed_ns = time.time_ns()
            wait_until(
                lambda: spooled(read_agent, [CUT_SITE])[CUT_SITE] == 0,
                timeout=3 * DEADLINE_S,
                interval=1.0,
                what=f"{CUT_SITE}'s spool drained",
            )
            drained_s = (time.time_ns() - healed_ns) / 1e9
            readings = {site: timely_reading(read_agent, site, 2 * deployment.interval_s) for site in sites}
            with store._lock:  # what each cut-off path's tracker was fed, at one instant
                fed = {
                    key: (path.fed, path.warm_until_seq, path.tracker.verdict(store.judged_through_ns).intervals)
                    for key, path in store._paths.items()
                    if key.source == CUT_SITE and path.tracker is not None
                }
            # the windows open at the readings are closed and shipped
            last_answer = max(answered for _, (_, answered) in readings.values())
            wait_until(lambda: time.time() >= last_answer + 3 * deployment.interval_s)
            assert deployment.bus_server is not None
            endpoint = bus_setup.analyzer_endpoint(tmp_path / "bus", (deployment.bus_server.url,))
            read_n = time.time_ns() // interval_ns
            batches = read_window_batches(endpoint, lab.namespace("core"))
            last_seq = batches[-1].seq if batches else 0
            wait_until(lambda: intake.through_seq >= last_seq, timeout=3 * DEADLINE_S, what="the analyzer through")
            with store._lock:
                counters, offers, accepted, duplicates = (
                    dict(store.counters),
                    Counter(offered),
                    taken["accepted"],
                    taken["duplicates"],
                )
            analyzer_disconnections = intake.disconnections_total - disconnections
            through_n = store.judged_through_ns // interval_ns - 1
    finally:
        heal(lab)

    found = delivery(batches)
    windows_in_stream = {(w.key, w.seq) for entry in batches for w in entry.batch.windows}
    ledger = Ledger()
    for entry in batches:
        for window in entry.batch.windows:
            ledger.note(entry.site, window.key, window.seq, window.sent)
    exact, after_reset, mismatches = 0, 0, []
    for site, (text, at) in readings.items():
        assert text is not None, f"{site}'s /metrics did not answer"
        e, r, m = ledger.check_reading(site, sent_totals(text), 0.0, at, deployment.interval_s)
        exact, after_reset, mismatches = exact + e, after_reset + r, mismatches + m

    cut_n, healed_n = cut_ns // interval_ns, healed_ns // interval_ns
    # Intervals wholly inside the cut, whose slice intervals closed by time long before the
    # heal: the site's windows of them cannot have been there. (A window of the last seconds
    # may arrive as its interval closes.)
    inside = range(cut_n + 2, healed_n - SHIPPED_WITHIN_INTERVALS)
    cut_windows = [
        w
        for entry in batches
        if entry.site == CUT_SITE
        for w in entry.batch.windows
        if w.start_ns // interval_ns in inside
    ]
    judged_inside = {
        name: {n: windows for n, windows in record.items() if n in inside} for name, record in closed.closed.items()
    }
    tracked = {}
    for key, (fed_n, warm_until, intervals) in fed.items():
        expected = sum(1 for k, seq in windows_in_stream if k == key and seq >= warm_until)
        expected_through = sum(
            1
            for entry in batches
            for w in entry.batch.windows
            if w.key == key and w.seq >= warm_until and w.start_ns // interval_ns <= fed_n
        )
        tracked[f"{key.target}/{key.slice}/{key.kind}"] = (intervals, expected_through, expected)
    report = {
        "cut_s": CUT_S,
        "deepest_spool_windows": deepest,
        "drained_after_heal_s": round(drained_s, 1),
        **found,
        "agents": {"paths_exact": exact, "paths_after_reset": after_reset, "mismatches": mismatches[:5]},
        "analyzer": {
            k: counters[k] for k in ("windows_ingested", "windows_duplicate", "windows_stale", "windows_late")
        },
        "late_by_site": dict(late_by_site),
        "cut_site_windows_inside_cut": len(cut_windows),
        "analyzer_disconnections": analyzer_disconnections,
        "paths_tracked (intervals, expected, in stream)": tracked,
        "intervals_inside": [inside.start, inside.stop, through_n, read_n],
        "slices_inside (closed, empty, cut site's windows, statuses)": {
            name: (
                len(record),
                sum(1 for windows in record.values() if not windows),
                sum(1 for windows in record.values() for w in windows if w.key.source == CUT_SITE),
                sorted({closed.verdicts(name)[n].status for n in record}),
            )
            for name, record in judged_inside.items()
        },
        "windows_lossy_and_slowest_ms_inside": {
            name: (
                sum(1 for windows in record.values() for w in windows if w.lost),
                sum(len(windows) for windows in record.values()),
                max((w.rtt_p99_ns or 0) / 1e6 for windows in record.values() for w in windows) if record else None,
            )
            for name, record in judged_inside.items()
        },
        "statuses_before_cut": {
            name: sorted({v.status for n, v in closed.verdicts(name).items() if n < cut_n}) for name in closed.closed
        },
    }
    print("\n" + json.dumps(report, indent=1, default=str))

    assert deepest > 0, "the cut site never spooled: the cut did not cut"
    assert found["duplicates_in_stream"] == 0 and found["order_breaks"] == 0, report
    assert not mismatches and exact + after_reset == found["paths"], report  # none lost on the way in
    # Every window the stream holds from shortly before the cut on reached the store, and each
    # one offered was taken once (a repeat dropped as a duplicate), none refused as too old.
    since_n = cut_n - round(BEFORE_S / deployment.interval_s)
    recent = {(w.key, w.seq) for entry in batches for w in entry.batch.windows if w.start_ns // interval_ns >= since_n}
    assert not recent - set(offers), f"{len(recent - set(offers))} windows of the stream never reached the store"
    assert sum(offers.values()) == accepted + duplicates and accepted <= len(offers), (accepted, duplicates, report)
    assert counters["windows_stale"] == 0, report
    assert analyzer_disconnections == 0, "the analyzer lost the bus: this was to be one site's cut"
    # The cut's slice intervals were judged on time, from the other sites, without the cut site.
    assert len(inside) >= CUT_S / deployment.interval_s / 2, report
    for name, record in judged_inside.items():
        assert set(record) == set(inside), (name, sorted(set(inside) - set(record)))
        assert not [w for windows in record.values() for w in windows if w.key.source == CUT_SITE], name
        # (an interval may close empty after every agent stalled at once: a loaded host, by design)
        assert sum(1 for windows in record.values() if windows) >= len(inside) * 3 // 4, name
        # A verdict for each (its status is the lab's under this host's load, reported above:
        # a loaded host's agents stall and lose probes with or without a cut).
        assert set(inside) <= set(closed.verdicts(name)), name
    # ... and its windows of those intervals arrived late, each once.
    assert cut_windows and late_by_site[CUT_SITE] >= len(cut_windows), report
    # Every cut-off path judged each of its windows once, the late ones included.
    assert tracked and all(intervals == through for intervals, through, _ in tracked.values()), report
