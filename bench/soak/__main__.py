"""python -m bench.soak: the lab all-in-one for a long time, with a fault made and healed
every minute (each kind in turn) and agents and the analyzer restarted at random moments
(SIGKILL and SIGTERM). It checks what a months-long run needs and writes the figures:

- resident memory of every process over time: its slope after warm-up (MiB/hour) and max;
- background threads: the analyzer's by name, the agents' by count, none lost;
- windows: every one the agents shipped reached the analyzer once (a tap on the store's
  ingest, bench/soak/ledger.py), none counted twice, none missing from a path's run except
  while its agent was down;
- hints: after each heal, no hint names what the fault touched, and how long that took.

Exit status 1 when an invariant is broken, 2 on a usage error. Needs root (the lab).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import httpx

from bench._common import environment, require_root, table, write_result
from bench.soak import faults
from bench.soak.ledger import Ledger, sent_totals
from bench.soak.sampler import Sampler
from lab.testing import heal_everything, running_lab
from xnetmon.allinone import AGENT_METRICS_PORT, LAB_INTERVAL_S, LAB_SITES, lab_deployment

SIGNALS = {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM}
TICK_S = 0.5  # the scheduler's turn: faults, heals, restarts and samples fall on these


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=30.0, help="how long to run (default 30)")
    p.add_argument("--fault-every", type=float, default=60.0, metavar="S", help="a fault every S seconds (60)")
    p.add_argument("--fault-hold", type=float, default=25.0, metavar="S", help="healed S seconds after it is made (25)")
    p.add_argument("--kinds", default=",".join(faults.KINDS), help="fault kinds, in turn (all the lab has)")
    p.add_argument(
        "--restart-every", type=float, default=150.0, metavar="S", help="one restart per S seconds on average (150)"
    )
    p.add_argument("--restart-targets", default="analyzer," + ",".join(LAB_SITES), help="what may be restarted (all)")
    p.add_argument("--restart-signals", default="KILL,TERM", help="signals, alternating (KILL,TERM)")
    p.add_argument("--warmup", type=float, default=300.0, metavar="S", help="memory is judged after this (300)")
    p.add_argument("--sample-every", type=float, default=10.0, metavar="S", help="memory and threads (10)")
    p.add_argument("--judge-span", type=float, default=600.0, metavar="S", help="slopes over less are not judged")
    p.add_argument("--max-slope", type=float, default=20.0, metavar="MIB_H", help="flat memory: MiB/hour (20)")
    p.add_argument("--settle", type=float, default=20.0, metavar="S", help="windows still in flight at the end")
    p.add_argument("--seed", type=int, default=None, help="random choices (default: from the clock, printed)")
    p.add_argument("--output", help="result file (default bench/results/soak-TIMESTAMP.json)")
    p.add_argument("--workdir", help="keep logs and snapshots here (default: a temporary directory)")
    args = p.parse_args(argv)
    unknown = set(args.kinds.split(",")) - set(faults.KINDS)
    if unknown:
        p.error(f"unknown fault kinds {sorted(unknown)}; kinds: {', '.join(faults.KINDS)}")
    targets, signals = args.restart_targets.split(","), args.restart_signals.split(",")
    if not set(targets) <= {"analyzer", *LAB_SITES} or not set(signals) <= set(SIGNALS):
        p.error(f"restart targets are analyzer and {', '.join(LAB_SITES)}; signals {', '.join(SIGNALS)}")
    if args.minutes <= 0 or args.fault_every <= args.fault_hold or args.fault_hold <= 0:
        p.error("--minutes must be positive and 0 < --fault-hold < --fault-every")
    return args


def restart_plan(
    rng: random.Random, duration_s: float, every_s: float, targets: list[str], signals: list[str]
) -> list[tuple[float, str, str]]:
    """(time, target, signal): at least one, times spread uniformly, every target in turn
    (shuffled), the signals alternating from a random first one."""
    count = max(1, round(duration_s / every_s))
    times = sorted(rng.uniform(0.1 * duration_s, 0.85 * duration_s) for _ in range(count))
    targets = list(targets)
    rng.shuffle(targets)
    first = rng.randrange(len(signals))
    # The signal moves on once more after each round of targets, so that every target gets
    # every signal in turn even when there are as many targets as signals times a whole number.
    return [
        (t, targets[i % len(targets)], signals[(first + i + i // len(targets)) % len(signals)])
        for i, t in enumerate(times)
    ]


# The analyzer runs in this process and a restart starts a new one in it: its memory is shown
# per incarnation, as an agent's is, and judged both per incarnation and over the whole
# process (what a replaced analyzer freed, the allocator may keep for the process, which a
# real process restart would give back; until that is shown, the process is judged too).
ANALYZER_PROCESS_ROLE = "analyzer process (every incarnation)"


def analyzer_role(incarnation: int) -> str:
    return f"analyzer #{incarnation} (this process)"


class Soak:
    def __init__(self, args, lab, deployment, ledger: Ledger, rng: random.Random) -> None:
        self.args, self.lab, self.deployment, self.ledger, self.rng = args, lab, deployment, ledger, rng
        self.restarts = deployment.restarts
        self.client = httpx.Client(base_url=deployment.api_url, timeout=10)
        self.sampler = Sampler()
        self.fault_log: list[dict] = []
        self.restart_log: list[dict] = []
        self.agent_restarts: dict[str, list[float]] = defaultdict(list)  # site -> wall-clock s
        self.since = dict.fromkeys(deployment.sites, 0.0)  # site -> wall-clock start of its agent
        # (site, sent totals, since, (asked at, answer read at)): the agent answered in between
        self.readings: list[tuple[str, dict, float, tuple[float, float]]] = []
        self.load: list[list[float]] = []
        self.started = time.monotonic()
        self.api_errors = 0
        self.analyzers = 1  # incarnations so far

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def get(self, path: str):
        try:
            return self.client.get(path).json()
        except (httpx.HTTPError, ValueError):
            self.api_errors += 1  # an analyzer restarting; the next turn asks again
            return None

    def pids(self) -> dict[str, int]:
        found = {ANALYZER_PROCESS_ROLE: os.getpid(), analyzer_role(self.analyzers): os.getpid()}
        for site in self.deployment.sites:
            found[f"agent:{site}"] = self.restarts.agent_pid(site)
            for pid, _argv, _cwd in self.lab.processes_matching(site, "xnetmon reflect"):
                found[f"reflector:{site}"] = pid
        return found

    def sample(self) -> None:
        ledger = self.ledger.footprint_mib()
        excluded = {ANALYZER_PROCESS_ROLE: ledger, analyzer_role(self.analyzers): ledger}
        self.sampler.sample(self.elapsed(), self.pids(), excluded)
        self.load.append([round(self.elapsed(), 1), *os.getloadavg()])

    def wait_agents(self, timeout: float = 300.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            health = self.get("/healthz")
            if health and {a["site"] for a in health["agents"]} >= set(self.deployment.sites):
                return True
            time.sleep(1)
        return False

    def restart(self, target: str, signame: str) -> None:
        entry = {"t_s": round(self.elapsed(), 1), "at": round(time.time(), 3), "target": target, "signal": signame}
        took = time.monotonic()
        if target == "analyzer":
            replaced = self.restarts.restart_analyzer(SIGNALS[signame])  # the old store's, once stopped
            entry["windows_taken"] = replaced["windows_ingested"]
            self.ledger.replaced(entry["windows_taken"])  # its successor's checkpoint is restored later
            self.analyzers += 1
        else:
            self.read_agent(target)
            self.agent_restarts[target].append(time.time())
            self.since[target] = time.time()
            entry["exit_status"] = self.restarts.restart_agent(target, SIGNALS[signame])
        entry["seconds"] = round(time.monotonic() - took, 2)
        self.restart_log.append(entry)
        print(f"  {entry['t_s']:7.1f} s  restart {target} by SIG{signame}: {entry}", flush=True)

    def read_agent(self, site: str) -> None:
        """The agent's probes sent per path, from its /metrics inside its site, for the
        windows' check once everything has reached the analyzer (Ledger.unmatched)."""
        asked = time.time()
        url = f"http://[{self.lab.address(site)}]:{AGENT_METRICS_PORT}/metrics"
        try:
            done = self.lab.exec(site, ["curl", "-sf", "-m", "20", url], timeout=30)
        except subprocess.TimeoutExpired:  # a starved machine: curl itself not run in time
            done = None
        at = (asked, time.time())  # starting curl in the site takes seconds on a loaded machine
        if done is None or done.returncode != 0:
            self.readings.append((site, {}, self.since[site], at))  # unreadable: reported, not judged
            return
        self.readings.append((site, sent_totals(done.stdout), self.since[site], at))

    def hints_touching(self, touched) -> list[dict]:
        hints = self.get("/hints")
        if hints is None:
            return [{"kind": "unknown", "suspects": ["analyzer not answering"]}]
        return [h for h in hints if set(h["suspects"]) & touched]

    def run(self) -> None:
        args = self.args
        duration = args.minutes * 60
        kinds = args.kinds.split(",")
        plan = restart_plan(
            self.rng, duration, args.restart_every, args.restart_targets.split(","), args.restart_signals.split(",")
        )
        next_sample = 0.0
        next_fault = args.fault_every / 2  # the first after half a period of quiet
        active = None  # (made, entry)
        watching = None  # (made, entry, healed at)
        number = 0
        while (now := self.elapsed()) < duration:
            if now >= next_sample:
                self.sample()
                next_sample = now + args.sample_every
            if plan and now >= plan[0][0]:
                _, target, signame = plan.pop(0)
                self.restart(target, signame)
            if watching is not None:
                made, entry, healed = watching
                left = self.hints_touching(made.touched)
                if not left:
                    entry["clear_s"] = round(self.elapsed() - healed, 1)
                    watching = None
                elif now >= next_fault or now + TICK_S >= duration:
                    entry["cleared"] = False
                    entry["hints_left"] = left
                    watching = None
            if active is not None and now >= active[1]["made_s"] + args.fault_hold:
                made, entry = active
                self.lab.heal(made.fault_id)
                entry["healed_s"] = round(self.elapsed(), 1)
                watching, active = (made, entry, self.elapsed()), None
            # a fault is made only with its whole period ahead, hold and clearing, as every other
            # (counted from its slot: the turn that makes it comes a tick later): one healed a
            # few seconds before the end would be judged not cleared
            if active is None and watching is None and now >= next_fault and next_fault + args.fault_every <= duration:
                kind = kinds[number % len(kinds)]
                number += 1
                made = faults.make(kind, self.lab, self.deployment.sites, self.rng)
                entry = {"kind": kind, "summary": made.summary, "made_s": round(self.elapsed(), 1), "cleared": True}
                self.fault_log.append(entry)
                active = (made, entry)
                next_fault += args.fault_every
                print(f"  {entry['made_s']:7.1f} s  fault {kind}: {made.summary}", flush=True)
            elif active is None and watching is None and now >= next_fault:
                next_fault += args.fault_every
            time.sleep(TICK_S)
        if active is not None:
            self.lab.heal(active[0].fault_id)
            active[1]["healed_s"] = round(self.elapsed(), 1)
            active[1]["cleared"] = None  # healed at the end: not judged
        heal_everything(self.lab)

    def drain(self) -> dict:
        """Until the agents' spools are empty; then each agent's counters are read and the
        windows closed by then given time to arrive. The agents' own spool figures."""
        self.wait_spools()
        for site in self.deployment.sites:
            self.read_agent(site)
        return self.wait_spools()

    def wait_spools(self, timeout: float = 180.0) -> dict:
        """Until every agent's spool is empty and `settle` seconds passed."""
        deadline = time.monotonic() + timeout
        settled_at = time.monotonic() + self.args.settle
        agents: dict = {}
        while time.monotonic() < deadline:
            health = self.get("/healthz") or {"agents": []}
            agents = {a["site"]: a["health"] or {} for a in health["agents"]}
            if time.monotonic() >= settled_at and all(h.get("spool_depth") == 0 for h in agents.values()):
                break
            time.sleep(1)
        self.sample()
        return {
            site: {"spool_depth": h.get("spool_depth"), "windows_dropped_total": h.get("windows_dropped_total")}
            for site, h in agents.items()
        }


def summarise(soak: Soak, args, spools: dict, seed: int, env: dict) -> dict:
    ledger = soak.ledger
    gaps = ledger.gaps(soak.agent_restarts, LAB_INTERVAL_S, args.settle)
    checks = [
        ledger.check_reading(site, totals, since, at, LAB_INTERVAL_S) for site, totals, since, at in soak.readings
    ]
    unmatched = [found for _, _, mismatches in checks for found in mismatches]
    unread = sorted({site for site, totals, _, _ in soak.readings if not totals})
    forgotten = ledger.forgotten_total
    dropped = sum(s["windows_dropped_total"] or 0 for s in spools.values())
    memory = soak.sampler.summaries(args.warmup, args.judge_span, args.max_slope)
    by_kind: dict[str, dict] = {}
    for kind in dict.fromkeys(f["kind"] for f in soak.fault_log):
        done = [f for f in soak.fault_log if f["kind"] == kind]
        clears = [f["clear_s"] for f in done if "clear_s" in f]
        by_kind[kind] = {
            "faults": len(done),
            "cleared": len(clears),
            "not_cleared": sum(1 for f in done if f["cleared"] is False),
            "clear_s_median": round(statistics.median(clears), 1) if clears else None,
            "clear_s_max": max(clears) if clears else None,
        }
    judged = [m for m in memory if m["slope_judged"]]
    invariants = {
        "memory_flat": all(m["slope_ok"] for m in judged) if judged else None,
        "no_thread_lost": not soak.sampler.analyzer_threads_missing and not any(m["threads_lost"] for m in memory),
        # Gaps the agents' own counters account for were never made (an agent stalled for a
        # whole window): reported, but not a loss between agent and analyzer.
        # A crash's forgotten windows are lost only if no store took them again since.
        "no_window_lost": not unmatched and ledger.refused_new == 0 and ledger.lost_to_crashes == 0 and dropped == 0,
        "no_window_doubled": ledger.doubled == 0,
        "every_hint_cleared": all(f["cleared"] is not False for f in soak.fault_log),
        "every_window_ingested_without_error": ledger.ingest_errors == 0,
        "spools_drained": all(s["spool_depth"] == 0 for s in spools.values()),
    }
    return {
        "benchmark": "soak",
        "seed": seed,
        "config": {k: v for k, v in vars(args).items() if k not in ("output",)},
        "environment": env,
        "duration_s": round(soak.elapsed(), 1),
        "load": {"loadavg_1_5_15_samples": soak.load, "loadavg_at_end": list(os.getloadavg())},
        "faults": soak.fault_log,
        "clear_by_kind": by_kind,
        "restarts": soak.restart_log,
        "memory": memory,
        "analyzer_threads_missing": soak.sampler.analyzer_threads_missing,
        "windows": {
            "offered": ledger.offered,
            "distinct": ledger.new,
            "accepted": ledger.accepted,
            "doubled": ledger.doubled,
            "refused_new": ledger.refused_new,
            "forgotten_by_analyzer_crash": forgotten,
            "lost_to_analyzer_crashes": ledger.lost_to_crashes,
            "reaccepted_after_crash": ledger.reaccepted_after_crash,
            "dropped_by_agent_spools": dropped,
            "gaps": gaps,
            "agent_readings": len(soak.readings),
            "agents_unread": unread,
            "paths_checked_exact": sum(exact for exact, _, _ in checks),
            "paths_checked_after_agent_counter_reset": sum(reset for _, reset, _ in checks),
            "made_but_not_offered": unmatched,
            "missing_in_gaps": sum(g["windows"] for g in gaps),
            "paths": len(ledger.seqs),
            "ingest_errors": ledger.ingest_errors,
        },
        "agents_at_end": spools,
        "api_errors": soak.api_errors,
        "invariants": invariants,
        "ok": all(v is not False for v in invariants.values()),
    }


def print_summary(result: dict, path: Path) -> None:
    w = result["windows"]
    print(
        f"\nsoak: {result['duration_s'] / 60:.1f} min, seed {result['seed']}, "
        f"load at end {result['load']['loadavg_at_end']}"
    )
    print(
        f"windows: {w['distinct']} distinct in {w['paths']} paths, {w['accepted']} accepted, {w['doubled']} doubled, "
        f"{w['missing_in_gaps']} missing in {len(w['gaps'])} gaps, {w['refused_new']} refused, "
        f"{w['forgotten_by_analyzer_crash']} forgotten by analyzer crashes "
        f"({w['lost_to_analyzer_crashes']} never taken again), {w['dropped_by_agent_spools']} dropped by spools"
    )
    rows = [
        [k, v["faults"], v["not_cleared"], v["clear_s_median"], v["clear_s_max"]]
        for k, v in result["clear_by_kind"].items()
    ]
    print(table(["fault", "n", "not cleared", "clear s median", "clear s max"], rows))
    rows = [
        [
            m["role"],
            m["pid"],
            m["span_after_warmup_s"],
            m["rss_max_mib"],
            m["rss_slope_mib_per_hour"],
            m["slope_judged"],
            m["threads_after_warmup"],
        ]
        for m in result["memory"]
    ]
    print(table(["process", "pid", "span s", "RSS max MiB", "MiB/h", "judged", "threads"], rows))
    print(f"restarts: {', '.join(r['target'] + ' SIG' + r['signal'] for r in result['restarts'])}")
    print("invariants: " + ", ".join(f"{k}={v}" for k, v in result["invariants"].items()))
    print(f"result: {path}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    require_root("the soak")
    seed = args.seed if args.seed is not None else time.time_ns() % 1_000_000
    rng = random.Random(seed)
    env = environment()
    print(f"soak: {args.minutes:g} min, seed {seed}, load {env['loadavg_at_start']}", flush=True)
    ledger = Ledger()
    ledger.install()
    with tempfile.TemporaryDirectory(prefix="xnetmon-soak-") as scratch:
        workdir = Path(args.workdir or scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        with running_lab("small") as lab:
            heal_everything(lab)
            with lab_deployment(lab, workdir, LAB_SITES, api_port=0) as deployment:
                soak = Soak(args, lab, deployment, ledger, rng)
                if not soak.wait_agents():
                    print("soak: not every agent reached the analyzer; see the logs in", workdir, file=sys.stderr)
                soak.started = time.monotonic()
                try:
                    soak.run()
                finally:
                    heal_everything(lab)
                spools = soak.drain()
                result = summarise(soak, args, spools, seed, env)
    ledger.uninstall()
    path = write_result("soak", result, args.output)
    print_summary(result, path)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
