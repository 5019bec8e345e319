"""The store's content as the API shows it (analyzer.api.views): a window in seconds, a path with
its verdict and the fingerprint of its latest trace, a verdict or its absence, and name lists cut
short in refusals."""

from __future__ import annotations

import pytest

from analyzer.api import views
from analyzer.sla.verdicts import default_policies
from analyzer.store.memory import WindowStore
from collector.contract.records import PathKey
from tests.analyzer_support import T0, W, batch, observation, settled, window

NOW = settled(T0 + 1)


@pytest.fixture
def store() -> WindowStore:
    """Two intervals of video cnty1a -> core losing 2 of 10, traced; egov cnty1a -> core untraced."""
    store = WindowStore(default_policies(), catch_up_s=0)
    for seq in (T0, T0 + 1):
        store.ingest(
            batch(window(seq, lost=2), window(seq, slice_="egov"), observations=(observation(observed_ns=seq * W),)),
            settled(seq),
        )
    return store


def test_a_window_shows_its_counts_and_its_times_in_seconds(store):
    latest = store.latest_window(PathKey("cnty1a", "core", "video", "stamp"))
    shown = views.window_summary(latest)
    assert shown.model_dump() == {
        "seq": T0 + 1,
        "start_ns": latest.start_ns,
        "end_ns": latest.end_ns,
        "sent": 10,
        "received": 8,
        "lost_forward": 2,
        "lost_reverse": 0,
        "lost_unknown": 0,
        "loss_ratio": 0.2,
        "rtt_p50_s": 0.004,
        "rtt_p99_s": 0.0049,
        "ipdv_s": 0.0001,
        "pdv_p99_s": 0.0019,
        "path_fingerprint": "0123456789abcdef",
    }
    assert views.path_summary(latest).path.model_dump() == {
        "source": "cnty1a",
        "target": "core",
        "slice": "video",
        "kind": "stamp",
    }


def test_an_unanswered_window_has_no_times():
    shown = views.window_summary(window(T0, lost=10))
    assert (shown.loss_ratio, shown.rtt_p50_s, shown.rtt_p99_s, shown.ipdv_s, shown.pdv_p99_s) == (
        1.0,
        None,
        None,
        None,
        None,
    )


def test_a_path_shows_its_verdict_its_newest_window_and_its_latest_trace(store):
    key = PathKey("cnty1a", "core", "video", "stamp")
    detail = views.path_detail(store, key, NOW)
    found = store.path_verdict(key, NOW)
    assert (detail.verdict.status, detail.verdict.since_ns, detail.verdict.intervals) == (
        found.status,
        found.since_ns,
        found.intervals,
    )
    assert detail.verdict.burn_rates == dict(found.burn_rates) and detail.verdict.burn_rates
    assert [(o.name, o.bound, o.observed, o.met) for o in detail.verdict.objectives] == [
        (o.name, o.bound, o.observed, o.met) for o in found.objectives
    ] and found.objectives
    assert (detail.target_address, detail.latest.seq) == ("fd00::1", T0 + 1)
    traced = observation(observed_ns=(T0 + 1) * W)
    assert (detail.fingerprint, detail.traced_ns) == (traced.fingerprint, traced.observed_ns)


def test_an_untraced_path_shows_its_windows_fingerprint_and_an_unknown_path_nothing(store):
    untraced = views.path_detail(store, PathKey("cnty1a", "core", "egov", "stamp"), NOW)
    assert (untraced.fingerprint, untraced.traced_ns) == ("0123456789abcdef", None)
    unknown = views.path_detail(store, PathKey("cnty1a", "mars", "video", "stamp"), NOW)
    assert (unknown.target_address, unknown.latest, unknown.fingerprint, unknown.traced_ns) == (None, None, None, None)
    assert unknown.verdict.status == "no-policy"


def test_no_verdict_reads_no_policy_with_the_reason():
    shown = views.verdict(None)
    assert (shown.status, shown.reason) == ("no-policy", "no SLA policy names this slice (see --policies)")
    assert (shown.objectives, shown.burn_rates, shown.since_ns) == ([], {}, None)


def test_name_lists_are_sorted_and_cut_after_twenty():
    assert views.listed({"video", "egov", "data"}) == "data, egov, video"
    assert views.listed([]) == ""
    many = [f"s{i:02}" for i in range(25)]
    assert views.listed(reversed(many)) == ", ".join(many[:20]) + " and 5 more"
