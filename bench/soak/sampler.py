"""Resident memory and threads of each process over time, per incarnation (a restarted agent
is a new one), and the slope of memory after warm-up."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

# The lab's analyzer consumes the bus: its state is its intake's checkpoint, saved from the
# intake's own thread (no snapshot thread, as with `analyzer --bus`).
ANALYZER_THREADS = frozenset({"xnetmon-analyzer-api", "xnetmon-analyzer-rootcause", "xnetmon-bus-intake-analyzer"})


def proc_status(pid: int) -> tuple[float, int] | None:
    """(resident MiB, threads) of a live process, or None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    try:
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["Threads"])
    except (KeyError, ValueError):
        return None


@dataclass(slots=True)
class Incarnation:
    role: str  # "analyzer", "agent:SITE", "reflector:SITE"
    pid: int
    started_s: float
    samples: list[tuple[float, float, int]] = field(default_factory=list)  # (t, MiB, threads)
    excluded_mib: float = 0.0  # at the latest sample: what of its memory was the soak's own (not judged)

    def after(self, warmup_s: float) -> list[tuple[float, float, int]]:
        return [s for s in self.samples if s[0] - self.started_s >= warmup_s]

    def summary(self, warmup_s: float, judge_span_s: float, max_slope: float) -> dict:
        steady = self.after(warmup_s)
        span = steady[-1][0] - steady[0][0] if len(steady) > 1 else 0.0
        slope = _slope([(t, mib) for t, mib, _ in steady]) * 3600 if len(steady) >= 3 else None
        threads = [n for _, _, n in steady]
        judged = slope is not None and span >= judge_span_s
        return {
            "role": self.role,
            "pid": self.pid,
            "samples": len(self.samples),
            "span_after_warmup_s": round(span, 1),
            "rss_max_mib": round(max((m for _, m, _ in self.samples), default=0.0), 1),
            "rss_first_after_warmup_mib": round(steady[0][1], 1) if steady else None,
            "rss_last_mib": round(self.samples[-1][1], 1) if self.samples else None,
            "rss_series": [[round(t, 1), round(mib, 1)] for t, mib, _ in self.samples],  # steps or slope
            "soak_own_mib_excluded": round(self.excluded_mib, 1),
            "rss_slope_mib_per_hour": round(slope, 2) if slope is not None else None,
            "slope_judged": judged,
            "slope_ok": (slope <= max_slope) if judged else None,
            "threads_after_warmup": [min(threads), max(threads)] if threads else None,
            # A thread lost: fewer threads at the end than when warm-up ended, in the same process.
            # The analyzer shares this process with the soak and uvicorn's worker pool, whose
            # threads come and go: it is judged by its threads' names (Sampler) instead.
            "threads_lost": not self.role.startswith("analyzer") and bool(threads) and threads[-1] < threads[0],
        }


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope (per second)."""
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / var if var else 0.0


class Sampler:
    """Keeps one Incarnation per (role, pid) and checks the analyzer's threads by name (it runs
    in this process: a missing one is a background loop that died)."""

    def __init__(self) -> None:
        self.incarnations: dict[tuple[str, int], Incarnation] = {}
        self.analyzer_threads_missing: list[dict] = []

    def sample(self, now_s: float, pids: dict[str, int], excluded_mib: dict[str, float] | None = None) -> None:
        """`excluded_mib`: per role, memory of that process that is the soak's own (the
        ledger, in the analyzer's process), taken off its resident size."""
        for role, pid in pids.items():
            status = proc_status(pid)
            if status is None:
                continue
            incarnation = self.incarnations.setdefault((role, pid), Incarnation(role, pid, now_s))
            excluded = (excluded_mib or {}).get(role, 0.0)
            incarnation.samples.append((now_s, status[0] - excluded, status[1]))
            incarnation.excluded_mib = excluded
        alive = {t.name for t in threading.enumerate()}
        missing = sorted(ANALYZER_THREADS - alive)
        if missing:
            self.analyzer_threads_missing.append({"t_s": round(now_s, 1), "missing": missing})

    def summaries(self, warmup_s: float, judge_span_s: float, max_slope: float) -> list[dict]:
        return [i.summary(warmup_s, judge_span_s, max_slope) for i in self.incarnations.values()]
