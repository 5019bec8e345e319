"""python -m bench.lab_bus_outage: the bus stopped under the lab's real load, then started.

The lab all-in-one runs (xnetmon.allinone.lab_deployment: an agent and a reflector on every
site of the `small` lab, nats-server with JetStream in the core site, the analyzer here);
once every agent reports, the load runs `--before` seconds, nats-server is stopped for
`--outage` seconds (300 by default) and started again on the same store, and the load runs
until every agent's spool is empty and `--after` seconds more. Then:

- Exactly once, in order: every window in the stream once by (path, seq), in seq order per
  path; the analyzer refused none as too old (what it got twice, a redelivery, its
  (path, seq) dedup dropped: `windows_duplicate`, reported).
- None lost: per path, the agent's own xnet_probe_sent_total equals the sum of `sent` over
  that path's windows in the stream (each window closed counts its probes there once), read
  after the spools drained (bench.soak.ledger's check); the agents dropped nothing at their
  spools' bound. Seqs missing inside a path's run (`missing_inside_runs`, reported) are
  windows the agent never closed (a stall of its loop skips an interval) when the counts
  match.
- Verdicts: the peer is the same windows in an uninterrupted run, a fresh store (the live
  analyzer's settings) fed each window just after its interval ends. Both stores are tapped
  where an interval closes (`ClosedIntervals`): which windows each closed interval gave its
  slice's tracker. "Equal" means, per slice and interval from the outage's start to the
  newest interval both closed, with the peer's intervals put in for the live run's from the
  stop until the spools drained (elsewhere both are the live run's: a window late under
  load outside the outage is not the outage's doing, and a budget would remember it for
  the whole run; such windows are counted apart, `windows_differ_outside_outage`, from half
  of `--before` before the outage): the same windows (by path and seq) and the
  same SlaVerdict evaluated at the interval's end (status, objectives, budget, burn rates,
  since, intervals seen, warming), the verdict computed from each tap by a tracker fed the
  intervals in order, as the analyzer's API shows it once that interval is the newest
  closed. With the outage this is a real claim: the outage's intervals are closed (and so
  judged) after the restart, with the windows the agents spooled; an interval closed
  without them while they waited would differ in windows and in every verdict after it
  (intervals seen, since, budget).

Exit status 1 when a check fails. Needs root (the lab).

    sudo .venv/bin/python -m bench.lab_bus_outage                 # 5 minutes of outage
    sudo .venv/bin/python -m bench.lab_bus_outage --outage 30 --before 20 --after 10
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nats

from analyzer.sla.series import IntervalStats
from analyzer.sla.verdicts import SlaTracker
from analyzer.store.memory import WindowStore
from bench._common import environment, require_root, table, write_result
from bench.soak.ledger import Ledger, sent_totals
from collector.bus.connection import BusEndpoint, run_on_bus_loop
from collector.bus.stream import STREAM_NAME
from collector.bus.subjects import PREFIX, parse_subject
from collector.contract.codec import ShipmentParser
from collector.contract.records import PathWindow
from collector.contract.shipment import ShipmentBatch
from xnetmon import bus_setup
from xnetmon.allinone import AGENT_METRICS_PORT, LAB_SITES, lab_deployment
from xnetmon.netns_sockets import enter_namespace

DEADLINE_S = 900.0  # each wait: agents up, spools drained, the analyzer through the stream
SPOOL_LINE = re.compile(r'^xnet_collector_spool_windows\{src="(?P<site>[^"]*)"\} (?P<value>\S+)$', re.MULTILINE)
DROPPED_LINE = re.compile(r'^xnet_collector_windows_dropped_total\{src="[^"]*"\} (?P<value>\S+)$', re.MULTILINE)
READER = "bench-outage-reader"  # the durable consumer that reads the stream back
FETCH_BATCH = 256
FETCH_WAIT_S = 5.0  # a pull that brings nothing this long: the windows up to the end are read
READ_TIMEOUT_S = 60.0  # one stream read request; a loaded server answers in seconds
SHIPPED_WITHIN_INTERVALS = 5  # an interval's windows are in the stream this long after it ends
ReadAgent = Callable[[str], str | None]  # site -> its agent's /metrics text, None when unreadable


# -- what the stream holds -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamBatch:
    seq: int  # the stream sequence
    site: str  # from the subject: the publisher's identity
    batch: ShipmentBatch


def read_window_batches(endpoint: BusEndpoint, namespace: str | None = None) -> list[StreamBatch]:
    """Every windows message of the stream, decoded, in stream order; read from a thread
    inside `namespace` (where the bus listens) when given."""
    found: list[StreamBatch] = []
    errors: list[BaseException] = []

    async def read() -> None:
        client = await nats.connect(**endpoint.connect_options() | {"allow_reconnect": False})
        parser = ShipmentParser()
        try:
            # A consumer of its own, as the analyzer reads: its identity may not get messages by sequence.
            js = client.jetstream(timeout=READ_TIMEOUT_S)
            last = (await js.stream_info(STREAM_NAME)).state.last_seq
            reader = await js.pull_subscribe(f"{PREFIX}.windows.>", durable=READER, stream=STREAM_NAME)
            try:
                seq = 0
                while seq < last:
                    try:
                        messages = await reader.fetch(FETCH_BATCH, timeout=FETCH_WAIT_S)
                    except (TimeoutError, nats.errors.TimeoutError):
                        break  # no windows message up to `last` is left
                    for message in messages:
                        seq = message.metadata.sequence.stream
                        if seq <= last:
                            _, site = parse_subject(message.subject)
                            found.append(StreamBatch(seq, site, parser.parse(message.data or b"")))
                        await message.ack()
            finally:
                await js.delete_consumer(STREAM_NAME, READER)
        finally:
            await client.close()

    def in_thread() -> None:
        try:
            if namespace is not None:
                enter_namespace(namespace)
            run_on_bus_loop(read())
        except BaseException as exc:  # handed to the caller
            errors.append(exc)

    thread = threading.Thread(target=in_thread, name="xnetmon-bench-stream-reader")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return found


def delivery(batches: list[StreamBatch]) -> dict:
    """Windows in the stream, repeats by (path, seq), paths whose seqs go backwards, and seqs
    missing inside a path's run."""
    per_path: dict[tuple, list[int]] = defaultdict(list)
    for entry in batches:
        for window in entry.batch.windows:
            per_path[window.key].append(window.seq)
    windows = sum(len(seqs) for seqs in per_path.values())
    return {
        "windows_in_stream": windows,
        "paths": len(per_path),
        "duplicates_in_stream": windows - sum(len(set(seqs)) for seqs in per_path.values()),
        "order_breaks": sum(any(b <= a for a, b in zip(seqs, seqs[1:])) for seqs in per_path.values()),
        "missing_inside_runs": sum(max(seqs) - min(seqs) + 1 - len(set(seqs)) for seqs in per_path.values()),
    }


# -- what each closed interval gave its slice's tracker ------------------------------------


@dataclass(slots=True)
class ClosedIntervals:
    """A tap on a store's closing of intervals: per slice, interval number -> the windows the
    slice's tracker was given for it (none: closed without windows)."""

    interval_s: float
    policies: dict
    closed: dict[str, dict[int, tuple[PathWindow, ...]]] = field(default_factory=lambda: defaultdict(dict))

    @classmethod
    def on(cls, store: WindowStore) -> ClosedIntervals:
        tap = cls(store.interval_s, dict(store.policies))
        original = store._close_through

        def close_through(slice_state, number: int) -> None:
            pending = {n: tuple(windows) for n, (windows, _) in slice_state.pending.items() if n <= number}
            first = slice_state.closed_upto + 1 if slice_state.closed_upto >= 0 else min(pending, default=number)
            record = tap.closed[slice_state.name]
            for n in range(first, number + 1):
                record[n] = pending.get(n, ())
            original(slice_state, number)

        store._close_through = close_through  # type: ignore[method-assign]
        return tap

    def verdicts(self, slice_name: str) -> dict[int, object]:
        """Interval number -> the slice's SlaVerdict once that interval is the newest closed:
        a tracker fed the recorded intervals in order, as the store's was."""
        policy = self.policies[slice_name]
        tracker = SlaTracker(policy, self.interval_s)
        interval_ns = round(self.interval_s * 1e9)
        found = {}
        record = self.closed.get(slice_name, {})
        for n in sorted(record):
            if record[n]:
                tracker.add(IntervalStats.of(list(record[n]), policy.unavailable_loss))
            found[n] = tracker.verdict((n + 1) * interval_ns)
        return found


def uninterrupted(batches: list[StreamBatch], like: WindowStore) -> ClosedIntervals:
    """The same windows in a run without an outage: a fresh store with `like`'s settings, each
    site's windows of an interval arriving together just after the interval ends."""
    store = WindowStore(
        like.policies,
        interval_s=like.interval_s,
        grace_intervals=like.grace_ns / like.interval_ns,
        catch_up_s=like.catch_up_ns / 1e9,
        warm_up_windows=like.warm_up_windows,
        stall_intervals=like.stall_intervals,
    )
    tap = ClosedIntervals.on(store)
    by_interval: dict[int, dict[str, list[PathWindow]]] = defaultdict(lambda: defaultdict(list))
    for entry in batches:
        for window in entry.batch.windows:
            by_interval[window.start_ns // store.interval_ns][entry.site].append(window)
    previous: set = set()
    for n in sorted(by_interval):
        arrives_ns = (n + 1) * store.interval_ns + store.interval_ns // 10
        # Sites with a path the previous interval lacked (an agent that skipped it) come first,
        # so that the interval does not close without them: all of it arrives before it closes.
        sites = sorted(by_interval[n].items(), key=lambda item: (all(w.key in previous for w in item[1]), item[0]))
        for site, windows in sites:
            store.ingest(ShipmentBatch(site, tuple(windows)), arrives_ns)
        previous = {w.key for windows in by_interval[n].values() for w in windows}
        store.advance(arrives_ns)
    return tap


def spliced(live: ClosedIntervals, peer: ClosedIntervals, span: range) -> ClosedIntervals:
    """`peer`'s intervals in `span`, `live`'s elsewhere: the live run as it would have been
    had only the intervals of `span` been judged as the peer judged them."""
    joined = ClosedIntervals(peer.interval_s, peer.policies)
    for name in set(live.closed) | set(peer.closed):
        outside = {n: w for n, w in live.closed.get(name, {}).items() if n not in span}
        joined.closed[name] = outside | {n: w for n, w in peer.closed.get(name, {}).items() if n in span}
    return joined


def compare(live: ClosedIntervals, peer: ClosedIntervals, from_n: int, to_n: int) -> dict:
    """Per slice, the intervals from `from_n` to `to_n` that both closed: how many, and
    those whose windows or verdicts differ (the first few, for the report)."""
    found = {}
    for name in sorted(set(live.closed) | set(peer.closed)):
        ours, theirs = live.verdicts(name), peer.verdicts(name)
        common = [n for n in sorted(set(ours) & set(theirs)) if from_n <= n <= to_n]
        keys = {n: {(w.key, w.seq) for w in live.closed[name][n]} for n in common}
        windows_differ = [n for n in common if keys[n] != {(w.key, w.seq) for w in peer.closed[name][n]}]
        verdicts_differ = [n for n in common if ours[n] != theirs[n]]
        counts = {n: (len(live.closed[name][n]), len(peer.closed[name][n])) for n in windows_differ}
        found[name] = {
            "intervals_compared": len(common),
            "windows_differ": len(windows_differ),
            # the first few: (interval - from_n, windows live, windows uninterrupted)
            "windows_differ_at": [(n - from_n, *counts[n]) for n in windows_differ[:10]],
            "windows_differing": [_difference(live.closed[name][n], peer.closed[name][n]) for n in windows_differ[:3]],
            "verdicts_differ": len(verdicts_differ),
            "first_differences": [
                {"interval": n, "live": _brief(ours[n]), "uninterrupted": _brief(theirs[n])}
                for n in verdicts_differ[:3]
            ],
            "statuses": sorted({ours[n].status for n in common}),  # type: ignore[attr-defined]
        }
    return found


def _difference(ours: tuple[PathWindow, ...], theirs: tuple[PathWindow, ...]) -> dict:
    """The windows of one interval only one side had: 'source>target seq' each."""
    mine, other = ({f"{w.key.source}>{w.key.target} {w.seq}" for w in side} for side in (ours, theirs))
    return {"only_live": sorted(mine - other)[:8], "only_uninterrupted": sorted(other - mine)[:8]}


def _brief(verdict) -> dict:
    return {
        "status": verdict.status,
        "intervals": verdict.intervals,
        "since_ns": verdict.since_ns,
        "budget": round(verdict.error_budget_remaining, 6),
    }


# -- the agents ----------------------------------------------------------------------------


def lab_agent_reader(lab) -> ReadAgent:
    def read(site: str) -> str | None:
        url = f"http://[{lab.address(site)}]:{AGENT_METRICS_PORT}/metrics"
        done = lab.exec(site, ["curl", "-sf", "-m", "20", url], timeout=30)
        return done.stdout if done.returncode == 0 else None

    return read


def spooled(read_agent: ReadAgent, sites) -> dict[str, float | None]:
    """Windows in each agent's spool now (None: its /metrics did not answer)."""
    found: dict[str, float | None] = {}
    for site in sites:
        text = read_agent(site)
        match = SPOOL_LINE.search(text or "")
        found[site] = float(match["value"]) if match else None
    return found


def _wait(condition: Callable[[], bool], what: str, poll_s: float = 1.0) -> float:
    """Seconds until `condition` held; RuntimeError after DEADLINE_S."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > DEADLINE_S:
            raise RuntimeError(f"{what}: not within {DEADLINE_S:g} s")
        time.sleep(poll_s)
    return time.monotonic() - started


# -- one run -------------------------------------------------------------------------------


def _reading(read_agent, site: str) -> tuple[str | None, tuple[float, float]]:
    """The agent's /metrics, and when it was asked and answered (the ledger's reading times)."""
    asked = time.time()
    text = read_agent(site)
    return text, (asked, time.time())


def run_outage(
    lab, workdir: Path, outage_s: float, before_s: float, after_s: float, say: Callable[[str], None] = print
) -> dict:
    """The lab deployment with the bus stopped for `outage_s`: the figures and checks above."""
    read_agent = lab_agent_reader(lab)
    with lab_deployment(lab, workdir, LAB_SITES, api_port=0) as deployment:
        assert deployment.restarts is not None and deployment.bus_server is not None  # the lab shape
        store, intake = deployment.restarts.analyzer.store, deployment.restarts.intake
        live = ClosedIntervals.on(store)
        sites = deployment.sites
        _wait(lambda: {a.site for a in store.agents()} >= set(sites), "every agent reporting")
        say(f"every agent reports; {before_s:g} s of load before the outage")
        time.sleep(before_s)  # the load before the outage: a duration under test
        server = deployment.bus_server
        stopped_ns = time.time_ns()
        server.stop()
        say(f"nats-server stopped for {outage_s:g} s")
        deepest, ends = 0.0, time.monotonic() + outage_s
        while time.monotonic() < ends:
            deepest = max(deepest, sum(v or 0 for v in spooled(read_agent, sites).values()))
            time.sleep(min(2.0, max(0.0, ends - time.monotonic())))
        server.start()
        restarted_ns = time.time_ns()
        say("nats-server started again; waiting for the spools to drain")
        drained_s = _wait(lambda: all(v == 0 for v in spooled(read_agent, sites).values()), "every spool empty")
        drained_n = time.time_ns() // store.interval_ns
        caught_up_s = (
            _wait(lambda: store.judged_through_ns >= restarted_ns, "the analyzer judging past the restart", 0.2)
            + drained_s
        )
        time.sleep(after_s)  # the load after the catch-up: a duration under test
        readings = {site: _reading(read_agent, site) for site in sites}
        time.sleep(3 * deployment.interval_s)  # the windows open at the reading are closed and shipped
        endpoint = bus_setup.analyzer_endpoint(workdir / "bus", (server.url,))
        read_n = time.time_ns() // store.interval_ns
        batches = read_window_batches(endpoint, lab.namespace("core"))
        last_seq = batches[-1].seq if batches else 0
        _wait(lambda: intake.through_seq >= last_seq, "the analyzer through the stream", 0.2)
        counters = dict(store.counters)
        through_n = store.judged_through_ns // store.interval_ns - 1
    ledger = Ledger()
    for entry in batches:
        for window in entry.batch.windows:
            ledger.note(entry.site, window.key, window.seq, window.sent)
    exact, after_reset, mismatches, dropped = 0, 0, [], 0.0
    for site, (text, at) in readings.items():
        if text is None:
            mismatches.append({"site": site, "error": "its /metrics did not answer"})
            continue
        dropped += sum(float(m["value"]) for m in DROPPED_LINE.finditer(text))
        e, r, m = ledger.check_reading(site, sent_totals(text), 0.0, at, deployment.interval_s)
        exact, after_reset, mismatches = exact + e, after_reset + r, mismatches + m
    outage_n = stopped_ns // store.interval_ns
    # The intervals whose windows the outage held back: from the stop until the spools drained.
    held_back = range(outage_n, drained_n + SHIPPED_WITHIN_INTERVALS + 1)
    # To the newest interval the analyzer had closed once it was through the stream read,
    # and none whose windows may still have been on their way when it was read.
    to_n = min(through_n, read_n - SHIPPED_WITHIN_INTERVALS)
    peer = uninterrupted(batches, store)
    # The outage's own effect: the peer judges the held-back intervals, the rest is the live
    # run's own (windows late under load elsewhere, counted apart, are not the outage's; a
    # budget remembers them for the whole run).
    verdicts = compare(live, spliced(live, peer, held_back), outage_n, to_n)
    from_n = outage_n - round(before_s / 2 / deployment.interval_s)
    elsewhere = compare(live, peer, from_n, to_n)
    for name, found in verdicts.items():
        found["windows_differ_outside_outage"] = elsewhere[name]["windows_differ"] - found["windows_differ"]
    return {
        "outage_s": outage_s,
        "outage_intervals": [outage_n, restarted_ns // store.interval_ns],
        "deepest_spool_windows": deepest,
        "spools_drained_after_restart_s": round(drained_s, 1),
        "verdicts_past_restart_after_s": round(caught_up_s, 1),
        **delivery(batches),
        "analyzer": {
            k: counters[k]
            for k in ("windows_ingested", "windows_duplicate", "windows_stale", "windows_late", "windows_future")
        },
        "intake_disconnections": intake.disconnections_total,
        "agents": {
            "paths_exact": exact,
            "paths_after_reset": after_reset,
            "mismatches": mismatches,
            "dropped_at_bound": dropped,
        },
        "verdicts": verdicts,
    }


def held(result: dict) -> dict[str, bool]:
    """The checks, by name."""
    slices = result["verdicts"].values()
    return {
        "exactly once in the stream": result["duplicates_in_stream"] == 0,
        "in order per path": result["order_breaks"] == 0,
        "none lost: the agents' counts match the stream": not result["agents"]["mismatches"]
        and result["agents"]["paths_exact"] + result["agents"]["paths_after_reset"] == result["paths"],
        "analyzer refused none as too old": result["analyzer"]["windows_stale"] == 0,
        "nothing dropped at the spools' bound": result["agents"]["dropped_at_bound"] == 0,
        "spools held windows during the outage": result["deepest_spool_windows"] > 0,
        "verdicts equal the uninterrupted run's": all(
            s["intervals_compared"] > 0 and s["windows_differ"] == 0 and s["verdicts_differ"] == 0 for s in slices
        ),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.lab_bus_outage", description=__doc__.split("\n\n")[0])
    p.add_argument("--outage", type=float, default=300.0, help="seconds nats-server is down (300)")
    p.add_argument("--before", type=float, default=30.0, help="seconds of load before the outage (30)")
    p.add_argument("--after", type=float, default=20.0, help="seconds of load once the spools drained (20)")
    p.add_argument("--output", help="result file (default bench/results/lab_bus_outage-TIMESTAMP.json)")
    p.add_argument("--workdir", help="keep logs and the bus's store here (default: a temporary directory)")
    args = p.parse_args(argv)
    if args.outage <= 0 or args.before < 4 or args.after < 0:
        p.error("--outage must be positive, --before at least 4 s, --after not negative")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    require_root("the lab bus outage")
    from lab.testing import heal_everything, running_lab

    env = environment()
    with tempfile.TemporaryDirectory(prefix="xnetmon-lab-outage-") as scratch:
        workdir = Path(args.workdir or scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        with running_lab("small") as lab:
            heal_everything(lab)
            result = run_outage(lab, workdir, args.outage, args.before, args.after)
    checks = held(result)
    payload = {
        "benchmark": "lab_bus_outage",
        "environment": env,
        "parameters": vars(args),
        "run": result,
        "checks": checks,
        "ok": all(checks.values()),
    }
    path = write_result("lab_bus_outage", payload, args.output)
    keys = ["windows_in_stream", "paths", "duplicates_in_stream", "order_breaks", "missing_inside_runs"]
    print(table(keys, [[result[k] for k in keys]]))
    print(
        f"deepest spool {result['deepest_spool_windows']:g} windows; spools drained "
        f"{result['spools_drained_after_restart_s']} s and verdicts past the restart "
        f"{result['verdicts_past_restart_after_s']} s after it; analyzer {result['analyzer']}"
    )
    rows = [[name, s["intervals_compared"], s["windows_differ"], s["verdicts_differ"], ",".join(s["statuses"])]
            for name, s in result["verdicts"].items()]  # fmt: skip
    print(table(["slice", "intervals compared", "windows differ", "verdicts differ", "statuses"], rows))
    for name, ok in checks.items():
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
    print(f"result {path}")
    return 0 if payload["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
