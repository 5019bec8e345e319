"""python -m bench.alert_delay: from a fault on the lab to the burn-rate alert firing, stage by stage.

Brings up the `small` lab, the all-in-one deployment on it (1 s windows, the lab policies) and
a real Prometheus inside the core site with the mixin built for the lab (`tests.lab_monitoring`:
page pairs 1m/5s at 14.4x and 2m/10s at 6x, so `for` is 2 s and 4 s). Each round makes one
loss fault (`--loss` of `--slice`'s packets on `--link`) once that slice's alert is neither
pending nor firing, and notes, as Unix times:

- `fault`: the fault made;
- `lossy window end`: the end of the first window of the slice that counts a lost probe (the
  agent closes a window at its end and ships it once its probes' fates settle);
- `window in`: that window handed to the analyzer's store (off the bus);
- `verdict`: the slice's short-window burn rate first at or above the pair's factor, read from
  the store every `--poll` seconds (what the analyzer's /metrics would say then);
- `scraped`: the first sample Prometheus scraped of `xnet_slice_burn_rate` at or above it;
- `pending` and `firing`: the first `ALERTS` samples of the page in those states (their
  timestamps are the rule evaluations').

The stages between them are where the delay comes from; `fault -> firing` is set beside the
alert's `for` and `for + one scrape interval`, the aim. `--scrape` and `--evaluation` set
Prometheus' intervals, `--analyzer-scrape` the analyzer's job alone (its burn rates change
once an interval); their defaults are the lab's (`tests.lab_monitoring`: 5 s, 1 s and 1 s;
`--evaluation 5 --analyzer-scrape 5` is the lab as it was). The page that fires first is
taken. `analyzer scrapes failed` counts the analyzer's `up == 0` samples from the fault to the
firing: a failed scrape makes the burn rate stale, which resets a pending alert.

Needs root (network namespaces) and Debian's prometheus.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench._common import environment, median, table, write_result

STAGES = ("lossy window end", "window in", "verdict", "scraped", "pending", "firing")
ALERT = "XnetSliceErrorBudgetBurn"


@dataclass
class Round:
    number: int
    fault: float = 0.0
    times: dict[str, float] = field(default_factory=dict)  # stage -> Unix time
    window: str = ""  # the page that fired: "long/short"
    for_s: float = 0.0
    analyzer_scrapes_failed: int = 0

    def stage_s(self) -> dict[str, float | None]:
        """Each stage's time since the one before it (None where a stage was not seen)."""
        out: dict[str, float | None] = {}
        before: float | None = self.fault
        for stage in STAGES:
            at = self.times.get(stage)
            out[stage] = round(at - before, 3) if at is not None and before is not None else None
            before = at
        return out

    @property
    def total_s(self) -> float | None:
        return round(self.times["firing"] - self.fault, 3) if "firing" in self.times else None


class StoreWatch:
    """Notes when the analyzer's store first takes a lossy window of the slice, and when the
    slice's verdict first shows a burn rate at or above a factor, from the store in this
    process (the lab deployment's analyzer runs here)."""

    def __init__(self, store, slice_name: str, poll_s: float):
        self.store, self.slice, self.poll_s = store, slice_name, poll_s
        self.armed_ns = 0  # windows starting before this (the fault) are not the fault's
        self.window_in: float | None = None
        self.lossy_end: float | None = None
        self.burns: list[tuple[float, dict[str, float]]] = []  # (time, label -> rate) once armed
        self._stop = threading.Event()
        self._ingest = store.ingest
        store.ingest = self._ingest_noting
        self._thread = threading.Thread(target=self._poll, daemon=True, name="alert-delay-watch")
        self._thread.start()

    def arm(self, at_ns: int) -> None:
        self.window_in = self.lossy_end = None
        self.burns = []
        self.armed_ns = at_ns

    def _ingest_noting(self, batch, now_ns: int):
        result = self._ingest(batch, now_ns)
        if self.armed_ns and self.window_in is None:
            lossy = [w for w in batch.windows if w.key.slice == self.slice and w.end_ns > self.armed_ns and w.lost > 0]
            if lossy:
                self.window_in = time.time()
                self.lossy_end = min(w.end_ns for w in lossy) / 1e9
        return result

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_s):
            if not self.armed_ns:
                continue
            verdict = self.store.slice_verdict(self.slice, time.time_ns())
            if verdict is not None:
                self.burns.append((time.time(), dict(verdict.burn_rates)))

    def first_burn(self, label: str, factor: float) -> float | None:
        return next((at for at, rates in self.burns if rates.get(label, 0.0) > factor), None)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.store.ingest = self._ingest


def raw_samples(prometheus: str, netns: str, promql: str, at: float) -> list[tuple[dict, list[tuple[float, float]]]]:
    """Every raw sample of a range selector at `at`: (labels, [(time, value), ...]) per series."""
    import json
    import urllib.parse

    from tests.prometheus_support import _get

    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": promql, "time": f"{at:.3f}"})
    body = _get(url, netns, parse=False)
    data = json.loads(body)["data"]["result"]
    return [(s["metric"], [(float(t), float(v)) for t, v in s["values"]]) for s in data]


def pages(policy) -> list[tuple[str, str, float, float]]:
    """(long label, short label, factor, for seconds) of each page pair of the slice's policy."""
    from analyzer.sla.verdicts import duration_label
    from dashboards.alerts import FOR_SHARE_OF_SHORT_WINDOW  # the `for` the mixin gives each pair

    return [
        (duration_label(w.long_s), duration_label(w.short_s), w.factor, w.short_s * FOR_SHARE_OF_SHORT_WINDOW)
        for w in policy.burn_windows
        if w.severity == "page"
    ]


def measure_round(mon, watch: StoreWatch, lab, args, number: int, pairs, lookback_s: float) -> Round:
    from tests.support import wait_until

    matchers = f'alertname="{ALERT}", slice="{args.slice}", severity="critical"'
    selector = f"ALERTS{{{matchers}}}"
    wait_until(lambda: not mon.query(selector), interval=1, what=f"{ALERT} for {args.slice} quiet before the fault")
    result = Round(number)
    result.fault = time.time()
    watch.arm(time.time_ns())
    fault = lab.fault_loss(args.link, args.loss, slice=args.slice)
    try:
        wait_until(
            lambda: mon.query(f'ALERTS{{{matchers}, alertstate="firing"}}'),
            interval=0.2,
            timeout=args.watch,
            what=f"{ALERT} for {args.slice} firing",
        )
    finally:
        lab.heal(fault)
    done = time.time()
    watch.armed_ns = 0
    if watch.window_in is not None and watch.lossy_end is not None:
        result.times["lossy window end"] = watch.lossy_end
        result.times["window in"] = watch.window_in
    states = raw_samples(mon.prometheus, mon.netns, f"{selector}[{lookback_s:.0f}s]", done)
    firsts = {}
    for labels, samples in states:
        after = [t for t, _ in samples if t >= result.fault]
        if after:
            key = (labels["alertstate"], labels["long_window"], labels["short_window"])
            firsts[key] = min(after)
    fired = sorted((t, long_w, short_w) for (state, long_w, short_w), t in firsts.items() if state == "firing")
    _, long_w, short_w = fired[0]
    result.window = f"{long_w}/{short_w}"
    result.times["firing"] = fired[0][0]
    factor, result.for_s = next((f, for_s) for lw, sw, f, for_s in pairs if (lw, sw) == (long_w, short_w))
    verdict = watch.first_burn(short_w, factor)
    if verdict is not None:
        result.times["verdict"] = verdict
    burns = raw_samples(
        mon.prometheus,
        mon.netns,
        f'xnet_slice_burn_rate{{slice="{args.slice}", window="{short_w}"}}[{lookback_s:.0f}s]',
        done,
    )
    scraped = [t for _, samples in burns for t, v in samples if t >= result.fault and v > factor]
    if scraped:
        result.times["scraped"] = min(scraped)
    down = raw_samples(mon.prometheus, mon.netns, f'up{{job="{mon.config.analyzer_job}"}}[{lookback_s:.0f}s]', done)
    result.analyzer_scrapes_failed = sum(
        1 for _, samples in down for t, v in samples if result.fault <= t <= result.times["firing"] and v == 0
    )
    if ("pending", long_w, short_w) in firsts:
        result.times["pending"] = firsts[("pending", long_w, short_w)]
    return result


def main(argv: list[str] | None = None) -> int:
    from tests.lab_monitoring import ANALYZER_SCRAPE_INTERVAL_S, EVALUATION_INTERVAL_S, SCRAPE_INTERVAL_S

    parser = argparse.ArgumentParser(prog="python -m bench.alert_delay", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="faults made, one after another (5)")
    parser.add_argument("--slice", default="egov", help="the slice the fault drops (egov)")
    parser.add_argument("--link", default="core-prov2", help="the link it drops on (core-prov2)")
    parser.add_argument("--loss", type=float, default=0.3, help="share of the slice's packets dropped (0.3)")
    parser.add_argument("--scrape", type=float, default=SCRAPE_INTERVAL_S, help="scrape interval, s (the lab's)")
    parser.add_argument(
        "--evaluation", type=float, default=EVALUATION_INTERVAL_S, help="rule evaluation interval, s (the lab's)"
    )
    parser.add_argument(
        "--analyzer-scrape", type=float, default=ANALYZER_SCRAPE_INTERVAL_S, help="the analyzer's, s (the lab's)"
    )
    parser.add_argument("--poll", type=float, default=0.05, help="seconds between reads of the store (0.05)")
    parser.add_argument("--watch", type=float, default=60.0, help="seconds a fault may take to fire (60)")
    parser.add_argument("--output", help="result file (default bench/results/alert_delay-TIME.json)")
    args = parser.parse_args(argv)
    analyzer_s = args.analyzer_scrape
    if os.geteuid() != 0:
        print("python -m bench.alert_delay needs root (network namespaces)", file=sys.stderr)
        return 2
    from analyzer.sla.policies import LAB_POLICY_FILE, load_policies
    from lab.testing import heal_everything, running_lab
    from tests.lab_monitoring import Monitored, lab_mixin, prometheus_config
    from tests.prometheus_support import running_prometheus, wait_for
    from xnetmon.allinone import LAB_SITES, lab_deployment

    policy = load_policies(LAB_POLICY_FILE)[args.slice]
    pairs = pages(policy)
    lookback_s = args.watch + 120
    rounds: list[Round] = []
    workdir = Path(tempfile.mkdtemp(prefix="xnet-alert-delay-"))
    load_before = os.getloadavg()
    try:
        with running_lab("small") as lab, contextlib.ExitStack() as stack:
            heal_everything(lab)
            run_dir, mixin_dir = workdir / "run", workdir / "mixin"
            run_dir.mkdir()
            config = lab_mixin(mixin_dir)
            netns = lab.namespace("core")
            deployment = stack.enter_context(lab_deployment(lab, run_dir, api_port=0))
            text = prometheus_config(
                lab,
                mixin_dir,
                config,
                None,
                scrape_s=args.scrape,
                evaluation_s=args.evaluation,
                analyzer_scrape_s=analyzer_s,
            )
            prometheus = stack.enter_context(running_prometheus(workdir, netns=netns, config_text=text))
            wait_for(prometheus, "up == 1", lambda r: len(r) == len(LAB_SITES) + 1, netns=netns)
            mon = Monitored(config, prometheus, None, netns)
            watch = StoreWatch(deployment.restarts.analyzer.store, args.slice, args.poll)
            stack.callback(watch.close)
            for number in range(1, args.rounds + 1):
                result = measure_round(mon, watch, lab, args, number, pairs, lookback_s)
                rounds.append(result)
                stages = ", ".join(f"{k} +{v}" for k, v in result.stage_s().items())
                print(
                    f"round {number}: {result.window} for {result.for_s:g} s: {stages}; "
                    f"fault -> firing {result.total_s} s",
                    flush=True,
                )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    headers = ["stage", "median s", "min s", "max s"]
    rows = []
    for stage in STAGES:
        values = [v for r in rounds if (v := r.stage_s()[stage]) is not None]
        rows.append([f"-> {stage}", *(f"{f(values):.2f}" if values else "-" for f in (median, min, max))])
    totals = [t for r in rounds if (t := r.total_s) is not None]
    rows.append(["fault -> firing", *(f"{f(totals):.2f}" if totals else "-" for f in (median, min, max))])
    for_s = median([r.for_s for r in rounds]) if rounds else 0.0
    print(table(headers, rows))
    failed = sum(r.analyzer_scrapes_failed for r in rounds)
    print(
        f"`for` {for_s:g} s; aim: for + one scrape = {for_s + args.scrape:g} s (scrape {args.scrape:g} s, "
        f"analyzer scrape {analyzer_s:g} s, evaluation {args.evaluation:g} s); analyzer scrapes failed: {failed}"
    )
    print(f"load average at start {load_before[0]:.1f}, at end {os.getloadavg()[0]:.1f}")
    path = write_result(
        "alert_delay",
        {
            "environment": environment(),
            "parameters": vars(args),
            "load_average": {"start": load_before[0], "end": os.getloadavg()[0]},
            "summary": [dict(zip(headers, row)) for row in rows],
            "for_s": for_s,
            "aim_s": for_s + args.scrape,
            "rounds": [{**asdict(r), "stages_s": r.stage_s(), "total_s": r.total_s} for r in rounds],
        },
        args.output,
    )
    print(f"result: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
