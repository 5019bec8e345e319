"""Per-prefix token buckets in a bounded table, under a global bucket."""

from __future__ import annotations

import socket

import pytest

from collector.reflector.rate_limit import GLOBAL_RATE_LIMITED, RATE_LIMITED, RateLimiter, RateLimits

S = 1_000_000_000  # ns


def v6(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6, text)


def v4(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET, text)


def limiter(**overrides) -> RateLimiter:
    return RateLimiter(RateLimits(**{"global_pps": 0, **overrides}), 0)


def test_addresses_of_one_ipv6_64_share_a_bucket_and_another_64_has_its_own():
    lim = limiter(per_prefix_pps=1, burst=2)
    assert [lim.admit(v6(f"2001:db8:1:2::{i}"), 0) for i in range(1, 4)] == [None, None, RATE_LIMITED]
    assert lim.admit(v6("2001:db8:1:3::1"), 0) is None


def test_prefix_keys_cut_partial_octets_and_never_mix_families():
    lim = limiter(prefix_v6=60, prefix_v4=28)
    assert lim.prefix_key(v6("2001:db8:1:2f::1")) == lim.prefix_key(v6("2001:db8:1:20::9"))
    assert lim.prefix_key(v6("2001:db8:1:2f::1")) != lim.prefix_key(v6("2001:db8:1:30::1"))
    assert lim.prefix_key(v4("192.0.2.17")) == lim.prefix_key(v4("192.0.2.30")) != lim.prefix_key(v4("192.0.2.33"))
    assert len(lim.prefix_key(v4("192.0.2.17"))) <= 4 < len(lim.prefix_key(v6("::1")))


def test_buckets_refill_at_the_rate_up_to_the_burst():
    lim = limiter(per_prefix_pps=10, burst=2)
    source = v4("192.0.2.1")
    assert [lim.admit(source, 0) for _ in range(3)] == [None, None, RATE_LIMITED]
    assert lim.admit(source, S // 10) is None  # one token back after 100 ms
    assert lim.admit(source, S // 10) == RATE_LIMITED
    assert [lim.admit(source, 100 * S) for _ in range(3)] == [None, None, RATE_LIMITED]  # no more than the burst


def test_a_full_table_reclaims_only_refilled_buckets_and_shares_one_overflow_bucket():
    lim = limiter(per_prefix_pps=1, burst=2, table_size=2)
    a, b, c, d = (v4(f"192.0.2.{i}") for i in range(1, 5))
    for _ in range(2):
        assert lim.admit(a, 0) is None  # a is empty now
    assert lim.admit(b, 0) is None
    # Full: c and d find no refilled bucket, so they share the overflow bucket (burst 2).
    assert [lim.admit(c, 0), lim.admit(d, 0), lim.admit(c, 0)] == [None, None, RATE_LIMITED]
    assert lim.overflowed == 3 and lim.tracked_prefixes == 2
    assert lim.admit(a, 0) == RATE_LIMITED  # a was not reset to make room
    # Two seconds later every bucket has refilled: a newcomer takes the place of one.
    assert lim.admit(c, 2 * S) is None and lim.tracked_prefixes == 2 and lim.overflowed == 3


def test_the_global_bucket_bounds_every_source_together_and_a_refusal_spends_nothing():
    lim = RateLimiter(RateLimits(per_prefix_pps=0.5, burst=1, global_pps=1, global_burst=2), 0)
    assert [lim.admit(v4(f"192.0.2.{i}"), 0) for i in range(1, 4)] == [None, None, GLOBAL_RATE_LIMITED]
    # 192.0.2.3 was refused by the global bucket: its own token is still there.
    assert lim.admit(v4("192.0.2.3"), S) is None
    # Now it is over its own budget: refused without taking the global token that came back...
    assert lim.admit(v4("192.0.2.3"), 2 * S) == RATE_LIMITED
    # ...which another source gets.
    assert lim.admit(v4("192.0.2.4"), 2 * S) is None


def test_zero_disables_a_limit():
    assert not RateLimits(per_prefix_pps=0, global_pps=0).enabled
    lim = RateLimiter(RateLimits(per_prefix_pps=0, global_pps=1, global_burst=1), 0)
    assert lim.admit(v4("192.0.2.1"), 0) is None and lim.tracked_prefixes == 0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"prefix_v6": 32}, "rate_prefix_v6: expected 33..128, got 32"),
        ({"prefix_v4": 0}, "rate_prefix_v4: expected 1..32, got 0"),
        ({"per_prefix_pps": -1}, "per_prefix_pps: expected 0..1e9"),
        ({"table_size": 0}, "table_size: expected 1..10000000, got 0"),
    ],
)
def test_limits_out_of_range_are_refused_by_name(overrides, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        RateLimits(**overrides)
