"""Window arithmetic against hand-computed cases, and the folded tally against the list-based
summary it replaced, field by field."""

from __future__ import annotations

import bisect
import dataclasses
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from collector.agent.windows import WindowBuilder
from collector.contract.records import RTT_BUCKETS_NS, LossDirection, PathKey, PathWindow, ProbeResult
from collector.probes.summary import percentile

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


# -- the tally against the list-based summary it replaced --------------------------------


def listed_window(results: list[ProbeResult], number: int, slice_dscp: int, fingerprint: str | None):
    """The window as it was computed from the list of its results, kept here as the reference."""
    firsts: dict[int, ProbeResult] = {}
    duplicates = reordered = 0
    lost_by = {LossDirection.FORWARD: 0, LossDirection.REVERSE: 0, LossDirection.UNKNOWN: 0}
    highest_seq = -1
    for r in results:
        if r.duplicate:
            duplicates += 1
            continue
        if r.lost:
            lost_by[r.loss] += 1
            firsts.setdefault(r.seq, r)
            continue
        firsts[r.seq] = r
        if r.seq < highest_seq:
            reordered += 1
        highest_seq = max(highest_seq, r.seq)
    received = [r for r in firsts.values() if not r.lost]
    rtts = sorted(r.rtt_ns for r in received)
    by_seq = sorted(received, key=lambda r: r.seq)
    ipdv = [abs(b.rtt_ns - a.rtt_ns) for a, b in zip(by_seq, by_seq[1:]) if b.seq == a.seq + 1]
    answered = [r for r in results if not r.lost and not r.duplicate]
    buckets = [0] * (len(RTT_BUCKETS_NS) + 1)
    for r in answered:
        buckets[bisect.bisect_left(RTT_BUCKETS_NS, r.rtt_ns)] += 1
    forward = sorted(r.forward_owd_ns for r in answered if r.forward_owd_ns is not None)
    reverse = sorted(r.reverse_owd_ns for r in answered if r.reverse_owd_ns is not None)
    clock_errors = [r.clock_error_ns for r in answered if r.clock_error_ns is not None]
    latest = max(answered, key=lambda r: r.sent_ns, default=None)
    return PathWindow(
        sent=len(firsts),
        received=len(received),
        duplicates=duplicates,
        lost_forward=lost_by[LossDirection.FORWARD],
        lost_reverse=lost_by[LossDirection.REVERSE],
        lost_unknown=lost_by[LossDirection.UNKNOWN],
        reordered=reordered,
        key=KEY,
        target_address="fd00::1",
        seq=number,
        start_ns=number * W,
        end_ns=(number + 1) * W,
        rtt_buckets=tuple(buckets),
        rtt_sum_ns=sum(r.rtt_ns for r in answered),
        rtt_min_ns=rtts[0] if rtts else None,
        rtt_p50_ns=percentile(rtts, 0.5),
        rtt_p90_ns=percentile(rtts, 0.9),
        rtt_p99_ns=percentile(rtts, 0.99),
        rtt_max_ns=rtts[-1] if rtts else None,
        ipdv_mean_abs_ns=sum(ipdv) // len(ipdv) if ipdv else None,
        pdv_p99_ns=percentile([v - rtts[0] for v in rtts], 0.99) if rtts else None,
        forward_owd_p50_ns=percentile(forward, 0.5),
        reverse_owd_p50_ns=percentile(reverse, 0.5),
        forward_owd_p99_ns=percentile(forward, 0.99),
        reverse_owd_p99_ns=percentile(reverse, 0.99),
        clock_error_ns=max(clock_errors) if clock_errors else None,
        dscp_remarked=sum(
            1
            for r in answered
            if (r.reflector_dscp is not None and r.reflector_dscp != slice_dscp)
            or (r.reply_dscp is not None and r.reply_dscp != slice_dscp)
        ),
        reflector_hop_limit=latest.reflector_hop_limit if latest else None,
        reply_hop_limit=latest.reply_hop_limit if latest else None,
        path_fingerprint=fingerprint,
        icmp_errors=sum(1 for r in results if r.icmp_error),
    )


_maybe_ns = st.one_of(st.none(), st.integers(0, 2_000_000_000))
_maybe_dscp = st.one_of(st.none(), st.sampled_from([0, 34, 46]))
_maybe_hops = st.one_of(st.none(), st.integers(0, 255))
# RTTs on and beside the bucket bounds as well as anywhere
_rtt = st.one_of(
    st.integers(1, 3_000_000_000), st.sampled_from(RTT_BUCKETS_NS), st.sampled_from([b + 1 for b in RTT_BUCKETS_NS])
)


@st.composite
def settled_results(draw) -> list[ProbeResult]:
    """One window's results as a session settles them: each sequence number once (answered,
    or lost in some direction, perhaps with an ICMP error), some answers repeated as
    duplicates, in any arrival order."""
    results = []
    for seq in draw(st.lists(st.integers(0, 200), unique=True, max_size=40)):
        sent_ns = T + draw(st.integers(0, 3)) * 1000  # equal send times: the first of them is the latest
        fate = draw(st.sampled_from(["answered", "answered", "forward", "reverse", "unknown"]))
        if fate != "answered":
            direction = LossDirection(fate)
            error = draw(st.one_of(st.none(), st.just("port unreachable from ::1")))
            results.append(lost(seq, sent_ns, direction, icmp_error=error))
            continue
        answer = ProbeResult(
            "core",
            "video",
            seq,
            sent_ns,
            draw(_rtt),
            forward_owd_ns=draw(_maybe_ns),
            reverse_owd_ns=draw(_maybe_ns),
            reflector_hop_limit=draw(_maybe_hops),
            reflector_dscp=draw(_maybe_dscp),
            reply_hop_limit=draw(_maybe_hops),
            reply_dscp=draw(_maybe_dscp),
            clock_error_ns=draw(_maybe_ns),
        )
        results.append(answer)
        for _ in range(draw(st.integers(0, 2))):
            results.append(dataclasses.replace(answer, rtt_ns=draw(_rtt), duplicate=True))
    return draw(st.permutations(results))


@settings(max_examples=300, deadline=None)
@given(settled_results(), st.one_of(st.none(), st.just("abcdef0123456789")))
def test_the_tally_gives_the_window_the_list_of_results_gave(results, fingerprint):
    b = builder()
    b.fingerprint = fingerprint
    b.add_all(results)
    windows = b.close_all()
    if not results:
        assert windows == []
        return
    [w] = windows
    expected = listed_window(results, T // W, 34, fingerprint)
    for field in dataclasses.fields(PathWindow):
        assert getattr(w, field.name) == getattr(expected, field.name), field.name
