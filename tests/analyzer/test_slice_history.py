"""analyzer.slice_history: one point per slice and step, bounded to the horizon, and a sampler
thread that survives a failing read and counts it."""

from __future__ import annotations

import math
import threading

from analyzer import slice_history
from analyzer.sla.verdicts import ObjectiveVerdict, SlaVerdict
from analyzer.slice_history import MAX_POINTS, HistorySampler, SliceHistory
from collector.system.loop_errors import LoopErrors
from tests.support import wait_until

S = 1_000_000_000


def verdict(status: str = "ok", budget: float = 1.0, observed: float | None = 0.01) -> SlaVerdict:
    loss = ObjectiveVerdict("two-way-packet-loss", 0.001, None, observed, True)
    delay = ObjectiveVerdict("two-way-delay-percentile", 0.15, 99.0, math.inf, False)
    return SlaVerdict("video", None, status, (loss, delay), budget, (("1h", 0.5),), 0, 0, 3)


def test_one_point_per_step_with_status_budget_burn_rates_and_observed_values():
    history = SliceHistory(step_s=10)
    for second in (0, 5, 10, 25):
        history.record(second * S, {"video": verdict(budget=1 - second / 100), "egov": None})
    points = history.points("video", 0)
    assert [p.at_ns // S for p in points] == [0, 10, 25]
    assert points[1].error_budget_remaining == 0.9 and points[1].burn_rates == (("1h", 0.5),)
    # an observed value above the largest bucket (infinite) has no JSON: it reads as none
    assert dict(points[0].observed) == {"two-way-packet-loss": 0.01, "two-way-delay-percentile": None}
    assert history.points("egov", 0) == [] and history.points("video", 11 * S)[0].at_ns == 25 * S


def test_the_horizon_bounds_the_points_kept_whatever_the_interval():
    history = SliceHistory(step_s=0.001, horizon_s=100)
    assert history.step_ns >= 100 * S // MAX_POINTS
    for step in range(MAX_POINTS + 500):
        history.record(step * history.step_ns, {"video": verdict()})
    kept = history.points("video", 0)
    assert len(kept) == MAX_POINTS and kept[-1].at_ns == (MAX_POINTS + 499) * history.step_ns


def test_the_sampler_counts_a_failing_read_and_samples_on():
    history = SliceHistory(step_s=0.01, horizon_s=MAX_POINTS * 0.01)
    errors = LoopErrors()
    calls = []
    failed_once = threading.Event()

    def verdicts(now: int) -> dict:
        calls.append(now)
        if not failed_once.is_set():
            failed_once.set()
            raise RuntimeError("store gone")
        return {"video": verdict()}

    sampler = HistorySampler(history, verdicts, errors)
    sampler.start()
    try:
        wait_until(lambda: len(history.points("video", 0)) >= 2, what="two samples after a failure")
    finally:
        sampler.stop()
    assert errors.counts() == {"history": 1}


def test_a_day_of_points_is_kept_packed_in_a_fifth_of_the_memory_of_objects():
    """Kept as objects a point took ~1,000 B (its tuples and floats): four slices' day of
    points was ~33 MiB, grown into over the analyzer's first day. Packed: ~210 B."""
    import tracemalloc

    def fresh(i: int) -> SlaVerdict:  # made per sample, as the analyzer's verdicts are
        objectives = tuple(ObjectiveVerdict(f"objective-{k}", 0.001, None, 1e-4 * (i % 7 + k), True) for k in range(3))
        rates = (("5m", 0.1 + i * 1e-5), ("1h", 0.2 + i * 1e-5), ("6h", 0.3 + i * 1e-6), ("3d", 0.01 * i))
        return SlaVerdict("video", None, "ok", objectives, 0.99 - i * 1e-6, rates, 0, 0, 3)

    history = SliceHistory(step_s=10)
    tracemalloc.start()
    try:
        for i in range(MAX_POINTS):
            history.record(i * 10 * S, {"video": fresh(i)})
        # what the history and the verdicts' values it keeps hold, not another thread's allocations
        files = [tracemalloc.Filter(True, slice_history.__file__), tracemalloc.Filter(True, __file__)]
        held = sum(t.size for t in tracemalloc.take_snapshot().filter_traces(files).traces)
    finally:
        tracemalloc.stop()
    per_point = held / MAX_POINTS
    assert per_point < 300, f"{per_point:.0f} B a point"
    last = history.points("video", (MAX_POINTS - 1) * 10 * S)[0]
    assert last.burn_rates == fresh(MAX_POINTS - 1).burn_rates
    assert last.observed == tuple((o.name, o.observed) for o in fresh(MAX_POINTS - 1).objectives)
