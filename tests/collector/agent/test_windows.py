"""Window arithmetic against hand-computed cases."""

from __future__ import annotations

import json

from collector.agent.windows import WindowBuilder
from collector.contract.records import RTT_BUCKETS_NS, LossDirection, PathKey, ProbeResult

KEY = PathKey("cnty1a", "core", "video", "stamp")
W = 10_000_000_000  # 10 s
T = 170_000 * W  # a window boundary


def ok(seq, sent_ns, rtt_us, **extra):
    return ProbeResult("core", "video", seq, sent_ns, rtt_us * 1000, **extra)


def lost(seq, sent_ns, direction, **extra):
    return ProbeResult("core", "video", seq, sent_ns, None, direction, **extra)


def builder(settle_ns=4_000_000_000):
    return WindowBuilder(KEY, "fd00::1", W, settle_ns, slice_dscp=34)


def test_probes_belong_to_the_window_they_were_sent_in_and_close_after_settling():
    b = builder()
    b.add(ok(0, T + 1, 100))
    b.add(ok(1, T + W - 1, 100))  # last nanosecond of the first window
    b.add(ok(2, T + W, 100))  # first of the next
    assert b.close_ready(T + W + 3_999_999_999) == []  # not settled yet
    [first] = b.close_ready(T + W + 4_000_000_000)
    assert (first.seq, first.start_ns, first.end_ns, first.sent) == (T // W, T, T + W, 2)
    [second] = b.close_all()
    assert second.seq == first.seq + 1 and second.sent == 1


def test_loss_by_direction_duplicates_and_reordering():
    b = builder()
    b.add_all(
        [
            ok(0, T + 1, 100),
            ok(2, T + 3, 100),
            ok(1, T + 2, 100),  # 1 arrives after 2: reordered
            lost(3, T + 4, LossDirection.FORWARD),
            lost(4, T + 5, LossDirection.REVERSE),
            lost(5, T + 6, LossDirection.UNKNOWN, icmp_error="port unreachable from ::1"),
            ProbeResult("core", "video", 0, T + 1, 120_000, duplicate=True),
        ]
    )
    [w] = b.close_all()
    assert (w.sent, w.received, w.lost_forward, w.lost_reverse, w.lost_unknown) == (6, 3, 1, 1, 1)
    assert (w.duplicates, w.reordered, w.icmp_errors) == (1, 1, 1)
    assert w.loss_ratio == 0.5


def test_histogram_buckets_are_inclusive_upper_bounds_with_an_inf_bucket():
    b = builder()
    one_ms, fifty_ms = RTT_BUCKETS_NS.index(1_000_000), RTT_BUCKETS_NS.index(50_000_000)
    b.add_all([ok(0, T + 1, 1000), ok(1, T + 2, 1001), ok(2, T + 3, 50_000), ok(3, T + 4, 5_000_000)])
    [w] = b.close_all()
    assert w.rtt_buckets[one_ms] == 1  # exactly 1 ms is in the 1 ms bucket
    assert w.rtt_buckets[one_ms + 1] == 1
    assert w.rtt_buckets[fifty_ms] == 1
    assert w.rtt_buckets[-1] == 1 and len(w.rtt_buckets) == len(RTT_BUCKETS_NS) + 1
    assert w.rtt_sum_ns == (1000 + 1001 + 50_000 + 5_000_000) * 1000


def test_rtt_percentiles_ipdv_and_pdv():
    b = builder()
    b.add_all([ok(i, T + i, 100 + (i % 2) * 50) for i in range(10)])  # 100,150,100,150...
    [w] = b.close_all()
    assert (w.rtt_min_ns, w.rtt_p50_ns, w.rtt_p90_ns, w.rtt_max_ns) == (100_000, 100_000, 150_000, 150_000)
    assert w.ipdv_mean_abs_ns == 50_000 and w.pdv_p99_ns == 50_000


def test_one_way_delays_clock_error_remarking_and_latest_hop_limits():
    b = builder()
    b.add(
        ok(
            0,
            T + 1,
            100,
            forward_owd_ns=40_000,
            reverse_owd_ns=60_000,
            clock_error_ns=2_000,
            reflector_dscp=34,
            reply_dscp=34,
            reflector_hop_limit=250,
            reply_hop_limit=251,
        )
    )
    b.add(
        ok(
            1,
            T + 2,
            100,
            forward_owd_ns=50_000,
            reverse_owd_ns=50_000,
            clock_error_ns=3_000,
            reflector_dscp=0,
            reply_dscp=34,
            reflector_hop_limit=252,
            reply_hop_limit=253,
        )
    )
    b.fingerprint = "abcdef0123456789"
    [w] = b.close_all()
    assert (w.forward_owd_p50_ns, w.reverse_owd_p50_ns, w.clock_error_ns) == (40_000, 50_000, 3_000)
    assert w.dscp_remarked == 1  # the second request arrived as best effort
    assert (w.reflector_hop_limit, w.reply_hop_limit) == (252, 253)
    assert w.path_fingerprint == "abcdef0123456789"


def test_window_round_trips_through_its_json():
    from collector.contract.codec import ShipmentParser, window_json

    b = builder()
    b.add_all([ok(0, T + 1, 100), lost(1, T + 2, LossDirection.FORWARD)])
    [w] = b.close_all()
    assert ShipmentParser().window(json.loads(window_json(w)), "window") == w
