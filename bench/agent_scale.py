#!/usr/bin/env python3
"""Agent at scale: N targets at one packet per second each from one process, our scheduler
(ICMPv6 echo and STAMP) side by side with smokeping_prober over the same targets in the same run.

Targets are N addresses (fd00:5ca1::1 upwards, inside fd00:5ca1::/112) on the loopback of
namespace xb-scale-PID-t, reached over a veth pair from namespace xb-scale-PID-p where every
prober runs; both namespaces are created here and removed at the end, also on error, Ctrl-C
or SIGTERM. In each repetition, one after the other (the order rotates):

- icmp:  `collector.agent.scheduler.Scheduler`, every target as a PlannedProbe of kind "icmp"
         (one echo socket), in a child process;
- smokeping: `smokeping_prober -i 1s` over the same targets (one pinger per host);
- stamp: the same Scheduler with kind "stamp" (one UDP socket) against one
         `xnetmon reflect --bind :: --rate-limit 0` process in xb-scale-PID-t.

Each prober runs WARMUP seconds, then is measured for DURATION seconds: CPU seconds per
wall second of the prober process (utime + stime from /proc/PID/stat), scheduling lag p99
and max (ours, from the scheduler's telemetry), the self-induced RTT spread p99 - p50 over
the replies of all targets, replies received / (targets x seconds), and resident memory
(VmRSS; for ours also per (target, slice) pair, above the process before the plan was built).
The report gives medians over repetitions and the ratios ours / smokeping_prober.

    sudo .venv/bin/python bench/agent_scale.py                          # 10,000 targets, 30 s, 3 repetitions
    sudo .venv/bin/python bench/agent_scale.py --targets 1000
    sudo .venv/bin/python bench/agent_scale.py --targets 50 --duration 3 --warmup 1 --reps 1

Needs root (namespaces) and the Debian package prometheus-smokeping-prober.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# Nothing of the project's packages is imported here: the child puts its own checkout first on
# sys.path before it imports the scheduler, and a package imported earlier would have come from
# wherever the venv's editable install points (another checkout's code, measured as this one's).
import _common as c

TARGET_PREFIX = "fd00:5ca1::"
TARGET_NET = "fd00:5ca1::/112"
LINK_P, LINK_T = "fd00:5ca0::1", "fd00:5ca0::2"
STAMP_PORT = 8620
# --pin: a deployed agent's reflectors are on other machines; here the STAMP reflector would
# otherwise take turns on the prober's CPU, and its turns would show as our scheduling lag
PROBER_CPU, REFLECTOR_CPU = 0, 1
SMOKEPING_PORT = 9374
TOOLS = ("icmp", "smokeping", "stamp")
# Histogram bounds (seconds) given to smokeping_prober; our RTTs are also put on them so that
# the spread of both tools is read the same way (each tool's exact spread is in the JSON too).
BUCKETS_S = [
    b / 1e6
    for b in (
        10,
        20,
        30,
        40,
        50,
        60,
        70,
        80,
        90,
        100,
        120,
        140,
        160,
        180,
        200,
        250,
        300,
        400,
        500,
        750,
        1000,
        2000,
        5000,
        10000,
        20000,
        50000,
        100000,
        250000,
        1000000,
        2500000,
        5000000,
        10000000,
    )
]
HIST_US = 100_000  # our histograms: 1 us bins up to 100 ms, then 1 ms bins up to 100 s (the max is kept exactly)
COARSE_MS = 99_900


# -- the two namespaces --------------------------------------------------------------------


class ScaleTestbed(c.NamespacePair):
    """xb-scale-TAG-p (the probers) and xb-scale-TAG-t (targets on its loopback), joined by a veth pair."""

    def __init__(self, targets: int, tag: str) -> None:
        super().__init__(f"xb-scale-{tag}-p", f"xb-scale-{tag}-t", f"xbsp{tag}", f"xbst{tag}", LINK_P, LINK_T)
        self.prober_ns, self.target_ns = self.ns_a, self.ns_b
        self.addresses = [f"{TARGET_PREFIX}{i:x}" for i in range(1, targets + 1)]

    def configure(self) -> None:
        c.add_loopback_addresses(self.target_ns, self.addresses)
        c.ip("-n", self.prober_ns, "route", "add", TARGET_NET, "via", LINK_T)
        # Replies and errors free of rate limits; ping sockets open to root in the prober
        # namespace (both probers then use one, as they would unprivileged).
        c.set_sysctl(self.target_ns, "net.ipv6.icmp.ratelimit=0")
        c.set_sysctl(self.prober_ns, "net.ipv6.icmp.ratelimit=0")
        c.set_sysctl(self.prober_ns, "net.ipv4.ping_group_range=0 2147483647")

    @property
    def reach_address(self) -> str:
        return self.addresses[-1]

    exec = staticmethod(c.in_namespace)
    sysctl = staticmethod(c.set_sysctl)


# -- what the parent reads of a process ------------------------------------------------------


def run_queue_seconds(pid: int) -> float:
    """How long the process's main thread waited for a CPU while runnable (/proc/PID/schedstat):
    the machine's share of a scheduling lag, none of it our code's."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9


def rss_bytes(pid: int | str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def smokeping_binary() -> str | None:
    for name in ("smokeping_prober", "prometheus-smokeping-prober"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _hist_percentile(counts: list[int], q: float, coarse: list[int] | None = None) -> float | None:
    """q-th percentile (0..100) of 1-us bins, then (if given) 1-ms bins above HIST_US: the upper
    edge of the bin it falls in, in us."""
    coarse = coarse or []
    total = sum(counts) + sum(coarse)
    if not total:
        return None
    rank = max(1, round(total * q / 100.0 + 0.4999))
    seen = 0
    for i, n in enumerate(counts):
        seen += n
        if seen >= rank:
            return float(i + 1)
    for i, n in enumerate(coarse):
        seen += n
        if seen >= rank:
            return float(HIST_US + (i + 1) * 1000)
    return None


def _bucket_quantile(bounds_s: list[float], cumulative: list[float], q: float) -> float | None:
    """Prometheus histogram_quantile over cumulative bucket counts (the last is +Inf), in us."""
    total = cumulative[-1]
    if total <= 0:
        return None
    rank = total * q / 100.0
    for i, count in enumerate(cumulative):
        if count >= rank:
            if i >= len(bounds_s):
                return bounds_s[-1] * 1e6
            low_bound = bounds_s[i - 1] if i else 0.0
            low_count = cumulative[i - 1] if i else 0.0
            inside = count - low_count
            share = (rank - low_count) / inside if inside else 0.0
            return (low_bound + (bounds_s[i] - low_bound) * share) * 1e6
    return None


def _bins_to_buckets(bins: list[int], over: int) -> list[float]:
    """Our 1-us bins put on BUCKETS_S, cumulative, +Inf last (a bin [i, i+1) us counts as <= i+1 us)."""
    cumulative = []
    running = 0
    index = 0
    for bound in BUCKETS_S:
        limit = min(round(bound * 1e6), len(bins))
        while index < limit:
            running += bins[index]
            index += 1
        cumulative.append(float(running))
    cumulative.append(float(sum(bins) + over))
    return cumulative


# -- running one tool ------------------------------------------------------------------------


class Measured:
    """A prober process: started, warmed up, measured between two instants, stopped."""

    def __init__(self, argv: list[str], ready: str | None) -> None:
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.ready = ready
        self.started = time.monotonic()

    @property
    def pid(self) -> int:
        return self.proc.pid  # `ip netns exec` replaces itself with the command: same process

    def wait_ready(self, timeout: float) -> None:
        if self.ready is None:
            return
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if self.ready in line:
                return
        self.kill()
        raise RuntimeError(f"prober did not start: {self.proc.args}\n{self.stderr_tail()}")

    def stderr_tail(self) -> str:
        try:
            _out, err = self.proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            return ""
        return (err or "")[-3000:]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


def _sample(pid: int) -> tuple[float, float]:
    return time.monotonic(), c.cpu_seconds(pid)


def run_ours(
    bed: ScaleTestbed,
    kind: str,
    targets_file: Path,
    warmup: float,
    duration: float,
    window_s: float,
    reflector_pid: int | None,
    profile: Path | None = None,
    cpus: list[int] | None = None,
) -> dict:
    argv = bed.exec(
        bed.prober_ns,
        c.PYTHON,
        str(Path(__file__).resolve()),
        "--child",
        kind,
        "--targets-file",
        str(targets_file),
        "--port",
        str(STAMP_PORT),
        "--window",
        str(window_s),
    )
    if profile is not None:
        argv += ["--profile", str(profile)]
    prober = Measured(argv, ready="running")
    try:
        prober.wait_ready(timeout=120)
        if cpus:
            c.pin([prober.pid], cpus)
        time.sleep(warmup)
        t0, cpu0 = _sample(prober.pid)
        waited0 = run_queue_seconds(prober.pid)
        refl0 = c.cpu_seconds(reflector_pid) if reflector_pid else None
        os.kill(prober.pid, signal.SIGUSR1)  # measure from here
        time.sleep(duration)
        t1, cpu1 = _sample(prober.pid)
        waited1 = run_queue_seconds(prober.pid)
        refl1 = c.cpu_seconds(reflector_pid) if reflector_pid else None
        rss = rss_bytes(prober.pid)
        os.kill(prober.pid, signal.SIGUSR2)  # up to here, then report and exit
        out, err = prober.proc.communicate(timeout=120)
    except BaseException:
        prober.kill()
        raise
    if prober.proc.returncode != 0:
        raise RuntimeError(f"{kind} child exited {prober.proc.returncode}: {err[-3000:]}")
    child = json.loads(out.strip().splitlines()[-1])
    wall = t1 - t0
    targets = child["pairs"]
    expected = targets * child["measured_s"]
    bins, over = child["rtt_bins"], child["rtt_over"]
    cumulative = _bins_to_buckets(bins, over)
    p50_b, p99_b = _bucket_quantile(BUCKETS_S, cumulative, 50), _bucket_quantile(BUCKETS_S, cumulative, 99)
    p50, p99 = _hist_percentile(bins, 50, [over]), _hist_percentile(bins, 99, [over])
    result = {
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu1 - cpu0, 3),
        "cpu_per_wall_s": (cpu1 - cpu0) / wall,
        "run_queue_per_wall_s": (waited1 - waited0) / wall,
        "cpu_per_probe_us": (cpu1 - cpu0) / child["probes_sent"] * 1e6 if child["probes_sent"] else None,
        "sent": child["probes_sent"],
        "expected": round(expected),
        "received": child["received"],
        "received_ratio": child["received"] / expected if expected else None,
        "duplicates": child["duplicates"],
        "lag_samples": child["lag_samples"],
        "lag_p50_us": child["lag_p50_us"],
        "lag_p99_us": child["lag_p99_us"],
        "lag_max_us": child["lag_max_us"],
        "rtt_p50_us": p50,
        "rtt_p99_us": p99,
        "rtt_spread_us": (p99 - p50) if p50 is not None and p99 is not None else None,
        "rtt_p50_us_buckets": p50_b,
        "rtt_spread_us_buckets": (p99_b - p50_b) if p50_b is not None and p99_b is not None else None,
        "rtt_max_us": child["rtt_max_us"],
        "rss_bytes": rss,
        "rss_baseline_bytes": child["rss_baseline_bytes"],
        "rss_per_pair_bytes": (rss - child["rss_baseline_bytes"]) / targets,
        "rss_after_build_bytes": child["rss_after_build_bytes"],
        "rss_per_pair_idle_bytes": (child["rss_after_build_bytes"] - child["rss_baseline_bytes"]) / targets,
        "socket_drops": child["socket_drops"],
        "housekeeping": child["housekeeping"],
        "gc": child["gc"],
        "pairs": targets,
        "plan_build_s": child["plan_build_s"],
        "windows": child["windows"],
        "socket": child["socket"],
    }
    if reflector_pid:
        result["reflector_cpu_per_wall_s"] = (refl1 - refl0) / wall
    return result


def run_smokeping(
    bed: ScaleTestbed, binary: str, tmp: Path, warmup: float, duration: float, privileged: bool, start_timeout: float
) -> dict:
    config = tmp / "smokeping.yml"
    config.write_text(
        "targets:\n- hosts:\n"
        + "".join(f'  - "{a}"\n' for a in bed.addresses)
        + "  interval: 1s\n  network: ip6\n  protocol: icmp\n"
    )
    argv = bed.exec(
        bed.prober_ns,
        binary,
        f"--config.file={config}",
        "-i",
        "1s",
        f"--web.listen-address=[::1]:{SMOKEPING_PORT}",
        "--buckets=" + ",".join(f"{b:g}" for b in BUCKETS_S),
        "--log.level=info",
    )
    if privileged:
        argv.append("--privileged")
    hosts = len(bed.addresses)
    log_path = tmp / "smokeping.log"
    with open(log_path, "w") as log:  # a file, not a pipe: it logs a line per pinger it starts
        proc = subprocess.Popen(argv, stdout=log, stderr=log)
    try:
        # It starts its pingers one after the other and only then listens for scrapes.
        started_at, cpu_start = _sample(proc.pid)
        if not _wait_metrics(bed, proc, start_timeout):
            t, cpu = _sample(proc.pid)
            started = log_path.read_text(errors="replace").count('msg="Starting prober"')
            return {
                "failed": f"not scrapeable {start_timeout:.0f} s after start: {started} of {hosts} pingers started",
                "pingers_started": started,
                "start_wall_s": round(t - started_at, 3),
                "cpu_per_wall_s": (cpu - cpu_start) / (t - started_at),
                "rss_bytes": rss_bytes(proc.pid),
                "pairs": hosts,
                "lag_p99_us": None,
                "lag_max_us": None,
                "privileged": privileged,
            }
        start_s = time.monotonic() - started_at
        time.sleep(warmup)
        first = _scrape(bed)  # scrapes stay outside the CPU interval: scrape, sample ... sample, scrape
        t0, cpu0 = _sample(proc.pid)
        time.sleep(duration)
        t1, cpu1 = _sample(proc.pid)
        rss = rss_bytes(proc.pid)
        last = _scrape(bed)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    wall = t1 - t0
    cumulative = [b - a for a, b in zip(first["buckets"], last["buckets"])]
    received = cumulative[-1]
    sent = last["requests"] - first["requests"]
    hist_wall = last["at"] - first["at"]
    expected = hosts * hist_wall
    p50, p99 = _bucket_quantile(BUCKETS_S, cumulative, 50), _bucket_quantile(BUCKETS_S, cumulative, 99)
    capped = received > 0 and cumulative[-2] < received * 0.99  # p99 above the top bound: a lower limit
    return {
        "rtt_p99_capped": capped,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu1 - cpu0, 3),
        "cpu_per_wall_s": (cpu1 - cpu0) / wall,
        "sent": sent,
        "expected": round(expected),
        "received": received,
        "received_ratio": received / expected if expected else None,
        "histogram_wall_s": round(hist_wall, 3),
        "start_s": round(start_s, 3),
        "lag_p99_us": None,
        "lag_max_us": None,
        "rtt_p50_us": p50,
        "rtt_p99_us": p99,
        "rtt_spread_us": (p99 - p50) if p50 is not None and p99 is not None else None,
        "rtt_p50_us_buckets": p50,
        "rtt_spread_us_buckets": (p99 - p50) if p50 is not None and p99 is not None else None,
        "rss_bytes": rss,
        "rss_per_pair_bytes": rss / hosts,
        "pairs": hosts,
        "scrape_s": [round(first["took_s"], 3), round(last["took_s"], 3)],
        "privileged": privileged,
    }


_SCRAPE = (
    "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=60).read().decode())"
)
_BUCKET = re.compile(r'^smokeping_response_duration_seconds_bucket\{.*le="([^"]+)".*\}\s+(\S+)$')
_REQUESTS = re.compile(r"^smokeping_requests_total\{.*\}\s+(\S+)$")


def _scrape(bed: ScaleTestbed) -> dict:
    start = time.monotonic()
    text = subprocess.run(
        bed.exec(bed.prober_ns, c.PYTHON, "-c", _SCRAPE, f"http://[::1]:{SMOKEPING_PORT}/metrics"),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    took = time.monotonic() - start
    by_le: dict[float, float] = {}
    requests = 0.0
    for line in text.splitlines():
        if line.startswith("smokeping_response_duration_seconds_bucket"):
            match = _BUCKET.match(line)
            if match:
                le = float(match.group(1))
                by_le[le] = by_le.get(le, 0.0) + float(match.group(2))
        elif line.startswith("smokeping_requests_total"):
            match = _REQUESTS.match(line)
            if match:
                requests += float(match.group(1))
    buckets = [by_le.get(b, 0.0) for b in BUCKETS_S] + [by_le.get(float("inf"), 0.0)]
    return {"buckets": buckets, "requests": requests, "took_s": took, "at": start + took / 2}


def _wait_metrics(bed: ScaleTestbed, proc: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"smokeping_prober exited {proc.returncode}")
        scrape = bed.exec(bed.prober_ns, c.PYTHON, "-c", _SCRAPE, f"http://[::1]:{SMOKEPING_PORT}/metrics")
        done = subprocess.run(scrape, capture_output=True, text=True, timeout=120)
        if done.returncode == 0 and "smokeping_requests_total{" in done.stdout:
            return True
        time.sleep(0.5)
    return False


# -- the child that runs our scheduler -------------------------------------------------------


def child(kind: str, targets_file: Path, port: int, window_s: float, profile: Path | None) -> int:
    import asyncio
    import gc

    def vmrss() -> int:
        return rss_bytes("self")

    # Everything the measurement itself needs is allocated before the baseline is read.
    rtt_bins = [0] * HIST_US
    lag_bins = [0] * HIST_US
    lag_coarse = [0] * COARSE_MS
    state = {
        "measuring": False,
        "received": 0,
        "duplicates": 0,
        "rtt_over": 0,
        "rtt_max": 0,
        "lag_max": 0,
        "windows": 0,
        "t0": 0,
        "t1": 0,
        "sent0": 0,
        "sent1": 0,
        "gc_started": 0,
    }

    from collector.agent.plan import PlannedProbe
    from collector.agent.scheduler import Scheduler
    from collector.contract.records import Slice, Target

    housekeeping: list[tuple[int, int]] = []  # (duration ns, windows closed) of each closing pass measured

    class Observer:
        """The scheduler's results in the benchmark's RTT histogram, its closing passes timed
        (both only in the measured interval)."""

        def on_result(self, result) -> None:
            if state["measuring"] and result.rtt_ns is not None:
                if result.duplicate:
                    state["duplicates"] += 1
                else:
                    state["received"] += 1
                    us = result.rtt_ns // 1000
                    if us < HIST_US:
                        rtt_bins[us] += 1
                    else:
                        state["rtt_over"] += 1
                    if result.rtt_ns > state["rtt_max"]:
                        state["rtt_max"] = result.rtt_ns

        def on_windows_closed(self, windows: int, duration_ns: int) -> None:
            if state["measuring"] and len(housekeeping) < 100_000:
                housekeeping.append((duration_ns, windows))

    gc_pauses: list[tuple[int, int]] = []  # (generation, ns) of each collection measured

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            state["gc_started"] = time.perf_counter_ns()
        elif state["measuring"] and len(gc_pauses) < 1_000_000:
            gc_pauses.append((info["generation"], time.perf_counter_ns() - state["gc_started"]))

    gc.callbacks.append(on_gc)
    addresses = targets_file.read_text().split()
    rss_baseline = vmrss()

    def on_windows(windows: list) -> None:
        state["windows"] += len(windows)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        built = time.monotonic()
        best_effort = Slice("best-effort", 0)
        probes = [PlannedProbe(Target(a, a, port), best_effort, kind, 1.0, 1, 2.0, None, None) for a in addresses]
        scheduler = Scheduler("bench", probes, window_s, on_windows, observer=Observer())
        del probes
        build_s = time.monotonic() - built
        rss_built = vmrss()
        telemetry = scheduler.telemetry

        def drain_lag() -> None:
            samples, telemetry.lag_samples = telemetry.lag_samples, []
            if not state["measuring"]:
                return
            for ns in samples:
                us = ns // 1000
                if us < HIST_US:
                    lag_bins[us] += 1
                else:
                    lag_coarse[min((us - HIST_US) // 1000, COARSE_MS - 1)] += 1
                if ns > state["lag_max"]:
                    state["lag_max"] = ns

        def begin() -> None:
            drain_lag()
            state.update(measuring=True, t0=time.time_ns(), sent0=telemetry.probes_sent)

        def end() -> None:
            drain_lag()
            state.update(measuring=False, t1=time.time_ns(), sent1=telemetry.probes_sent)
            stop.set()

        loop.add_signal_handler(signal.SIGUSR1, begin)
        loop.add_signal_handler(signal.SIGUSR2, end)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        runner = asyncio.create_task(scheduler.run(stop))
        print("running", flush=True)
        while not stop.is_set():  # what the agent does on every batch of windows, once a second
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except TimeoutError:
                drain_lag()
        await runner
        drops = _socket_drops()  # while our sockets are still open, so still listed
        scheduler.close()
        echo_socket = scheduler.probers["icmp"].socket_kind  # None: no echo target, STAMP over UDP
        socket_kind = echo_socket.value if echo_socket is not None else "udp"
        lag_count = sum(lag_bins) + sum(lag_coarse)
        print(
            json.dumps(
                {
                    "pairs": scheduler.sessions,
                    "probes_sent": state["sent1"] - state["sent0"],
                    "measured_s": (state["t1"] - state["t0"]) / 1e9,
                    "received": state["received"],
                    "duplicates": state["duplicates"],
                    "rtt_bins": _trim(rtt_bins),
                    "rtt_over": state["rtt_over"],
                    "rtt_max_us": state["rtt_max"] / 1000,
                    "lag_samples": lag_count,
                    "lag_p50_us": _hist_percentile(lag_bins, 50, lag_coarse),
                    "lag_p99_us": _hist_percentile(lag_bins, 99, lag_coarse),
                    "lag_max_us": state["lag_max"] / 1000,
                    "rss_baseline_bytes": rss_baseline,
                    "rss_after_build_bytes": rss_built,
                    "socket_drops": drops,
                    "housekeeping": _housekeeping_summary(housekeeping),
                    "gc": _gc_summary(gc_pauses),
                    "plan_build_s": build_s,
                    "windows": state["windows"],
                    "socket": socket_kind,
                }
            )
        )

    if profile is not None:
        import cProfile

        profiler = cProfile.Profile(time.process_time)  # CPU time: waiting for a CPU is charged to no function
        profiler.enable()
        asyncio.run(main())
        profiler.disable()
        profiler.dump_stats(str(profile))
    else:
        asyncio.run(main())
    return 0


def _socket_drops() -> int:
    """Datagrams the kernel dropped on the sockets of this namespace (the prober's own, here):
    the last column of /proc/net/udp6 and /proc/net/icmp6 (ping sockets)."""
    drops = 0
    for name in ("udp6", "icmp6", "udp", "icmp"):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        drops += sum(int(line.split()[-1]) for line in lines if line.split())
    return drops


def _housekeeping_summary(passes: list[tuple[int, int]]) -> dict:
    """The scheduler's turns that handed out windows (a closing pass runs once per window
    length, a time slice of it per turn): how long each held the event loop, in ms."""
    plain = [d / 1e6 for d, w in passes if not w]
    closing = [d / 1e6 for d, w in passes if w]
    out: dict = {"passes": len(passes), "closing_passes": len(closing)}
    if plain:
        out |= {"plain_p50_ms": c.median(plain), "plain_max_ms": max(plain)}
    if closing:
        out |= {
            "closing_p50_ms": c.median(closing),
            "closing_max_ms": max(closing),
            "windows_per_closing_pass": sum(w for _d, w in passes if w) / len(closing),
        }
    return out


def _gc_summary(pauses: list[tuple[int, int]]) -> dict:
    """The interpreter's garbage collections in the measured interval, by generation: each
    one holds the event loop (a full one scans every container object the process holds)."""
    out: dict = {}
    for generation in (0, 1, 2):
        ms = [ns / 1e6 for g, ns in pauses if g == generation]
        if ms:
            out[f"gen{generation}"] = {"count": len(ms), "p50_ms": c.median(ms), "max_ms": max(ms)}
    return out


def _trim(bins: list[int]) -> list[int]:
    last = max((i for i, n in enumerate(bins) if n), default=-1)
    return bins[: last + 1] + [0]


# -- the benchmark ---------------------------------------------------------------------------


def measure(args: argparse.Namespace, smokeping: str | None, verbose: bool) -> dict:
    tools = [t for t in TOOLS if t in args.tools]
    if "smokeping" in tools and smokeping is None:
        raise SystemExit("smokeping_prober not found: apt-get install prometheus-smokeping-prober")
    runs = []
    with ScaleTestbed(args.targets, str(os.getpid())) as bed, tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        targets_file = tmp / "targets"
        targets_file.write_text("\n".join(bed.addresses) + "\n")
        reflector = None
        if "stamp" in tools:
            argv = bed.exec(
                bed.target_ns, c.XNETMON, "reflect", "--bind", "::", "--port", str(STAMP_PORT), "--rate-limit", "0"
            )
            reflector = c.Server(argv, ready="listening", name="reflector").start()
            if args.pin and reflector.proc is not None:
                c.pin([reflector.proc.pid], [REFLECTOR_CPU])
        try:
            for rep in range(args.reps):
                order = tools[rep % len(tools) :] + tools[: rep % len(tools)]
                run: dict = {"order": order}
                for tool in order:
                    if tool == "smokeping" and any("failed" in r["smokeping"] for r in runs):
                        run[tool] = {"failed": "skipped: it failed to start in an earlier repetition"}
                    elif tool == "smokeping":
                        run[tool] = run_smokeping(
                            bed, smokeping, tmp, args.warmup, args.duration, args.privileged, args.start_timeout
                        )
                    else:
                        pid = reflector.proc.pid if tool == "stamp" and reflector and reflector.proc else None
                        profile = args.profile_dir / f"{tool}-{rep + 1}.prof" if args.profile_dir else None
                        run[tool] = run_ours(
                            bed,
                            tool,
                            targets_file,
                            args.warmup,
                            args.duration,
                            args.window,
                            pid,
                            profile,
                            [PROBER_CPU] if args.pin else None,
                        )
                    if verbose:
                        _progress(rep, tool, run[tool])
                runs.append(run)
        finally:
            if reflector is not None:
                reflector.stop()
        namespaces = [bed.prober_ns, bed.target_ns]
    summary = {tool: _summarise([r[tool] for r in runs]) for tool in tools}
    ratios = {}
    if "smokeping" in summary and summary["smokeping"]["measured_runs"]:
        s = summary["smokeping"]
        for tool in ("icmp", "stamp"):
            if tool in summary:
                o = summary[tool]
                ratios[f"{tool}/smokeping"] = {
                    "cpu_per_wall_s": c.ratio(o["median_cpu_per_wall_s"], s["median_cpu_per_wall_s"]),
                    "rtt_spread_buckets": c.ratio(
                        o["median_rtt_spread_us_buckets"] or 0, s["median_rtt_spread_us_buckets"] or 0
                    ),
                    "received_ratio": c.ratio(o["median_received_ratio"], s["median_received_ratio"]),
                    "rss": c.ratio(o["median_rss_bytes"], s["median_rss_bytes"]),
                }
    return {"runs": runs, "tools": summary, "ratios": ratios, "namespaces": namespaces}


def _summarise(results: list[dict]) -> dict:
    good = [r for r in results if "failed" not in r]
    failed = [r for r in results if "failed" in r]

    def med(key: str) -> float | None:
        values = [r[key] for r in good if r.get(key) is not None]
        return c.median(values) if values else None

    summary = {
        f"median_{key}": med(key)
        for key in (
            "cpu_per_wall_s",
            "cpu_per_probe_us",
            "run_queue_per_wall_s",
            "lag_p99_us",
            "lag_max_us",
            "rtt_p50_us",
            "rtt_spread_us",
            "rtt_p50_us_buckets",
            "rtt_spread_us_buckets",
            "received_ratio",
            "rss_bytes",
            "rss_per_pair_bytes",
            "rss_per_pair_idle_bytes",
            "socket_drops",
            "reflector_cpu_per_wall_s",
        )
    }
    summary["measured_runs"] = len(good)
    if failed:
        summary["failed"] = failed[0]["failed"]
        attempts = [r for r in failed if "cpu_per_wall_s" in r]
        if attempts:
            summary["failed_start_cpu_per_wall_s"] = c.median([r["cpu_per_wall_s"] for r in attempts])
            summary["failed_start_rss_bytes"] = c.median([r["rss_bytes"] for r in attempts])
    return summary


def _progress(rep: int, tool: str, r: dict) -> None:
    if "failed" in r:
        extra = f" (CPU {r['cpu_per_wall_s']:.2f} s/s meanwhile)" if "cpu_per_wall_s" in r else ""
        print(f"rep {rep + 1} {tool:9s} FAILED: {r['failed']}{extra}", flush=True)
        return
    lag = "n/a" if r["lag_p99_us"] is None else f"{r['lag_p99_us']:.0f}/{r['lag_max_us']:.0f}"
    print(
        f"rep {rep + 1} {tool:9s} cpu {r['cpu_per_wall_s']:.3f} s/s, lag p99/max {lag} us, "
        f"RTT p50 {_num(r['rtt_p50_us'])} us spread {_num(r['rtt_spread_us'])} us, "
        f"received {r['received_ratio']:.1%}, RSS {r['rss_bytes'] / 2**20:.1f} MiB{_per_probe(r)}",
        flush=True,
    )


def _per_probe(r: dict) -> str:
    """Ours: CPU per probe sent (smokeping_prober's sends are not counted), and the time the
    machine kept the child runnable but off every CPU."""
    if r.get("cpu_per_probe_us") is None:
        return ""
    return f", {r['cpu_per_probe_us']:.1f} us CPU/probe, waited for a CPU {r['run_queue_per_wall_s']:.3f} s/s"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def report(result: dict, targets: int) -> str:
    rows = []
    notes = []
    for tool, s in result["tools"].items():
        name = {"icmp": "xnetmon icmp", "stamp": "xnetmon stamp", "smokeping": "smokeping_prober"}[tool]
        if not s["measured_runs"]:
            rows.append(
                [
                    name,
                    s.get("failed_start_cpu_per_wall_s"),
                    None,
                    None,
                    None,
                    None,
                    None,
                    "failed",
                    (s.get("failed_start_rss_bytes") or 0) / 2**20 or None,
                    None,
                ]
            )
            notes.append(f"{name}: {s['failed']}")
            continue
        per_pair = None if tool == "smokeping" else s["median_rss_per_pair_bytes"]
        rows.append(
            [
                name,
                s["median_cpu_per_wall_s"],
                s["median_lag_p99_us"],
                s["median_lag_max_us"],
                s["median_rtt_p50_us_buckets"],
                s["median_rtt_spread_us_buckets"],
                s["median_rtt_spread_us"],
                None if s["median_received_ratio"] is None else f"{s['median_received_ratio']:.1%}",
                s["median_rss_bytes"] / 2**20,
                per_pair,
            ]
        )
    lines = [
        f"{targets:,} targets at 1 packet/s each, medians over repetitions",
        c.table(
            [
                "prober",
                "CPU s/s",
                "lag p99 us",
                "lag max us",
                "RTT p50 us",
                "p99-p50 us",
                "p99-p50 exact",
                "replies",
                "RSS MiB",
                "B/pair",
            ],
            rows,
        ),
    ]
    lines += notes
    for name, r in result["ratios"].items():
        lines.append(
            f"ratio {name}: CPU {_ratio(r['cpu_per_wall_s'])}, RTT spread {_ratio(r['rtt_spread_buckets'])}, "
            f"replies {_ratio(r['received_ratio'])}, RSS {_ratio(r['rss'])}"
        )
    if "stamp" in result["tools"] and result["tools"]["stamp"]["median_reflector_cpu_per_wall_s"] is not None:
        reflector = result["tools"]["stamp"]["median_reflector_cpu_per_wall_s"]
        lines.append(f"reflector CPU during the stamp runs: {reflector:.3f} s/s")
    for tool in ("icmp", "stamp"):
        s = result["tools"].get(tool)
        if s and s["median_cpu_per_probe_us"] is not None:
            lines.append(
                f"xnetmon {tool}: {s['median_cpu_per_probe_us']:.1f} us CPU per probe sent; waited for a CPU "
                f"{s['median_run_queue_per_wall_s']:.3f} s/s while runnable (the machine's, not ours)"
            )
    return "\n".join(lines)


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=10000)
    parser.add_argument("--duration", type=float, default=30.0, help="measured seconds per prober and repetition")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds each prober runs before it is measured")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--tools", default=",".join(TOOLS), help="comma-separated subset of icmp,smokeping,stamp")
    parser.add_argument(
        "--start-timeout",
        type=float,
        default=60.0,
        help="seconds smokeping_prober may take to start every pinger and listen (else: failed)",
    )
    parser.add_argument("--window", type=float, default=10.0, help="our PathWindow length, seconds")
    parser.add_argument("--privileged", action="store_true", help="smokeping_prober on raw sockets (--privileged)")
    parser.add_argument(
        "--pin",
        action="store_true",
        help=f"our prober on CPU {PROBER_CPU}, the STAMP reflector on CPU {REFLECTOR_CPU} (a far site's when deployed)",
    )
    parser.add_argument(
        "--profile-dir",
        type=Path,
        help="run our children under cProfile and write TOOL-REP.prof here (slows them down)",
    )
    parser.add_argument("--output", help="result file (default bench/results/agent_scale-TIME.json)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no per-repetition lines")
    parser.add_argument("--child", choices=("icmp", "stamp"), help=argparse.SUPPRESS)
    parser.add_argument("--targets-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=STAMP_PORT, help=argparse.SUPPRESS)
    parser.add_argument("--profile", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        sys.path.insert(0, str(c.REPO))
        return child(args.child, args.targets_file, args.port, args.window, args.profile)
    c.require_root("bench/agent_scale.py")
    if not 1 <= args.targets <= 65535:
        parser.error("--targets must be in 1..65535 (one /112)")
    args.tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    if not args.tools or set(args.tools) - set(TOOLS):
        parser.error(f"--tools: a subset of {','.join(TOOLS)}")
    c.unwind_on_termination()  # the `finally` that removes the namespaces runs
    env = c.environment()
    smokeping = smokeping_binary()
    if smokeping:
        version = subprocess.run([smokeping, "--version"], capture_output=True, text=True)
        env["smokeping_prober"] = (version.stdout + version.stderr).strip().splitlines()[0:1]
    result = measure(args, smokeping, not args.quiet)
    payload = {
        "benchmark": "agent_scale",
        "parameters": {
            "targets": args.targets,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "reps": args.reps,
            "tools": args.tools,
            "window_s": args.window,
            "smokeping_privileged": args.privileged,
            "buckets_s": BUCKETS_S,
        },
        "environment": env,
        **result,
    }
    path = c.write_result("agent_scale", payload, args.output)
    print(report(result, args.targets))
    print(f"result: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
