"""Two tiers of sessions: strangers on probation cannot evict established sessions."""

from __future__ import annotations

import pytest

from collector.reflector.sessions import SessionLimits, SessionTable

S = 1_000_000_000


def key(n: int) -> tuple:
    return (b"\x7f\x00\x00\x01", 40000 + n, 9)


def test_a_session_is_established_after_confirm_after_requests_and_survives_a_flood():
    table = SessionTable(SessionLimits(max_established=10, max_probation=5, confirm_after=3))
    real = [table.get(key(0), i, authenticated=False) for i in range(3)]
    assert real[0] is real[2] and table.established == 1
    for n in range(1, 1000):  # strangers: one request each
        table.get(key(n), 10, authenticated=False)
    assert table.get(key(0), 11, authenticated=False) is real[0]
    assert table.established == 1 and len(table) == 6 and table.evicted_probation == 999 - 5


def test_an_authenticated_request_establishes_its_session_at_once():
    table = SessionTable(SessionLimits(max_established=10, max_probation=1))
    session = table.get(key(0), 0, authenticated=True)
    table.get(key(1), 0, authenticated=False)
    table.get(key(2), 0, authenticated=False)
    assert table.get(key(0), 1, authenticated=True) is session and table.established == 1


def test_a_full_established_tier_gives_way_only_to_an_idle_session():
    table = SessionTable(SessionLimits(max_established=2, max_probation=10, idle_ns=60 * S))
    a = table.get(key(0), 0, authenticated=True)
    b = table.get(key(1), 30 * S, authenticated=True)
    c = table.get(key(2), 31 * S, authenticated=True)  # both active: c stays on probation
    assert table.established == 2 and table.evicted_idle == 0
    assert table.get(key(0), 32 * S, authenticated=True) is a  # a is active again
    d = table.get(key(3), 100 * S, authenticated=True)  # b idle for 70 s gives way; a for 68 s too
    assert table.established == 2 and table.evicted_idle == 1
    assert table.get(key(3), 101 * S, authenticated=True) is d
    assert c is not None and b is not d


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"max_established": 0}, "max_established: expected 1..10000000, got 0"), ({"idle_ns": 0}, "idle time")],
)
def test_limits_out_of_range_are_refused_by_name(overrides, message):
    with pytest.raises(ValueError, match=message):
        SessionLimits(**overrides)
