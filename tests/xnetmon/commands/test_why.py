"""`xnetmon why`'s sentences for the states the analyzer answers with: no policy, no data,
degraded with and without hints, several hints, and how each missed objective reads."""

from __future__ import annotations

from xnetmon.commands.why import EVIDENCE_SHOWN, explain

HINT = {
    "kind": "congestion",
    "suspects": ["prov1>core"],
    "slices": ["video"],
    "confidence": 0.7,
    "first_seen_ns": None,
    "evidence": [f"sentence {n}" for n in range(5)],
}


def detail(status: str, objectives=(), hints=()) -> dict:
    return {
        "name": "video",
        "verdict": {"status": status, "since_ns": None, "objectives": list(objectives)},
        "hints": list(hints),
    }


def test_a_slice_without_policy_or_data_says_so():
    assert (
        explain(detail("no-policy")).splitlines()[0] == "video: no SLA policy names this slice, so it has no verdict."
    )
    assert explain(detail("no-data")).splitlines() == [
        "video: no data yet (no probes judged in its recent intervals).",
        "No root-cause hint: nothing in the network is suspected.",
    ]


def test_missed_objectives_read_with_their_units_and_direction():
    missed = [
        {"name": "two-way-delay-percentile", "percentile": 99.0, "observed": float("inf"), "bound": 0.15, "met": False},
        {"name": "availability", "observed": 0.98, "bound": 0.999, "met": False},
        {"name": "two-way-packet-loss", "observed": None, "bound": 0.001, "met": False},
        {"name": "one-way-delay-percentile", "percentile": 95.0, "observed": 0.001, "bound": 0.1, "met": True},
    ]
    first = explain(detail("breached", missed)).splitlines()[0]
    assert first == (
        "video: breached since - (two-way-delay-percentile p99 over 1 s > 150 ms; "
        "availability 98.00% < 99.90%; two-way-packet-loss - > 0.10%)."
    )


def test_a_degraded_slice_without_hints_points_at_the_status_command():
    lines = explain(detail("at-risk")).splitlines()
    assert lines[0] == "video: at-risk since -."
    assert lines[1].startswith("No root-cause hint yet") and "xnetmon status --slice video" in lines[1]


def test_the_first_hint_comes_with_some_evidence_and_the_others_follow():
    second = {**HINT, "kind": "link-down", "suspects": ["a>b"], "confidence": 0.4, "evidence": ["other"]}
    lines = explain(detail("breached", hints=[HINT, second])).splitlines()
    assert lines[1].startswith("Most likely: congestion on link prov1>core (confidence 0.70)")
    assert lines[2 : 2 + EVIDENCE_SHOWN] == [f"Evidence: sentence {n}" for n in range(EVIDENCE_SHOWN)]
    assert lines[-1].startswith("Also: link a>b down (confidence 0.40)") and len(lines) == 3 + EVIDENCE_SHOWN


SEGMENTS = [
    {"segment": "cnty1a>city1a", "kind": "span", "lost": 41, "packets": 8012, "loss_ratio": 41 / 8012,
     "last_delay_ns": 250_000.0},
    {"segment": "city1a>prov1", "kind": "link", "lost": 0, "packets": 7971, "loss_ratio": 0.0, "last_delay_ns": None},
    {"segment": "cnty1a>prov1", "kind": "end-to-end", "lost": 41, "packets": 8012, "loss_ratio": 41 / 8012,
     "last_delay_ns": 400_000.0},
]  # fmt: skip


def test_in_situ_segments_follow_with_the_losing_ones_first_and_end_to_end():
    lines = explain(detail("breached", hints=[HINT]), SEGMENTS).splitlines()
    assert lines[-1] == (
        "In-situ segments (marked flows): cnty1a>city1a span lost 41 of 8,012 (0.51%), delay 0.2 ms; "
        "cnty1a>prov1 end-to-end lost 41 of 8,012 (0.51%), delay 0.4 ms."
    )


def test_a_clean_slice_shows_one_segment_and_end_to_end_and_none_without_marking():
    clean = [{**s, "lost": 0, "loss_ratio": 0.0} for s in SEGMENTS]
    last = explain(detail("ok"), clean).splitlines()[-1]
    assert last.startswith("In-situ segments (marked flows): cnty1a>city1a span lost 0 of 8,012 (0.00%)")
    assert "end-to-end" in last
    assert "In-situ" not in explain(detail("ok"), [])


def test_blocks_a_capture_dropped_in_are_said_to_be_unknown():
    flagged = [{**SEGMENTS[0], "unknown_blocks": 3}, *SEGMENTS[1:]]
    last = explain(detail("breached", hints=[HINT]), flagged).splitlines()[-1]
    assert "(0.51%), delay 0.2 ms, 3 block(s) unknown (a counting point's capture dropped); cnty1a>prov1" in last
