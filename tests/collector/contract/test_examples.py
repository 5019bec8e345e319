"""The example records are valid records: they survive the codec's round trip, add up as a
collector's would, take overrides, and `seq` places a window on its interval."""

from __future__ import annotations

import json

import pytest

from collector.contract.codec import ShipmentParser, collector_health, record_dict, window_json
from collector.contract.examples import EXAMPLE_KEY, example_health, example_window
from collector.contract.records import RTT_BUCKETS_NS, PathKey


def test_an_example_window_survives_the_codec_round_trip():
    for window in (
        example_window(),
        example_window(PathKey("a", "b", "egov", "icmp"), 7, forward_owd_p99_ns=2_400_000, path_fingerprint=None),
    ):
        assert ShipmentParser().window(json.loads(window_json(window)), "windows[0]") == window


def test_an_example_health_survives_the_codec_round_trip():
    health = example_health("bj-core", spool_depth=5)
    assert collector_health(json.loads(json.dumps(record_dict(health))), "health") == health


def test_the_example_window_adds_up_like_a_measured_one():
    window = example_window()
    assert window.key == EXAMPLE_KEY
    assert window.sent == window.received + window.lost == sum(window.rtt_buckets)
    assert len(window.rtt_buckets) == len(RTT_BUCKETS_NS) + 1
    assert window.rtt_min_ns <= window.rtt_sum_ns // window.received <= window.rtt_max_ns
    assert window.rtt_min_ns <= window.rtt_p50_ns <= window.rtt_p90_ns <= window.rtt_p99_ns <= window.rtt_max_ns


def test_seq_places_a_window_on_its_interval():
    window = example_window(seq=170_000_003, interval_ns=1_000_000_000)
    assert (window.seq, window.start_ns, window.end_ns) == (
        170_000_003,
        170_000_003_000_000_000,
        170_000_004_000_000_000,
    )
    assert (example_window().start_ns, example_window().end_ns) == (0, 10_000_000_000)


def test_fields_override_the_example_values_and_the_rest_stay():
    key = PathKey("bj-core", "sh-core", "video", "stamp")
    window = example_window(key, 2, start_ns=5, end_ns=6, sent=20, path_fingerprint=None)
    assert (window.key, window.seq, window.start_ns, window.end_ns) == (key, 2, 5, 6)
    assert (window.sent, window.path_fingerprint) == (20, None)
    assert window.received == example_window().received
    health = example_health(spool_depth=9)
    assert (health.site, health.spool_depth) == (EXAMPLE_KEY.source, 9)
    assert health.probes_sent_total == example_health().probes_sent_total


def test_a_field_the_record_does_not_have_is_refused():
    with pytest.raises(TypeError, match="rtt_p95_ns"):
        example_window(rtt_p95_ns=1)
    with pytest.raises(TypeError, match="uptime"):
        example_health(uptime=1)
