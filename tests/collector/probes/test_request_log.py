"""The request log the STAMP and ICMPv6 sessions keep: numbering, lookup by the wire's
number, what it forgets and when, and its size at a probe a second."""

from __future__ import annotations

import tracemalloc

from collector.probes.request_log import (
    ANSWERED,
    MOST_REMEMBERED,
    OUTSTANDING,
    SETTLED,
    STRIDE,
    TIMED_OUT,
    RequestLog,
)

S = 1_000_000_000
HORIZON = 4 * S


def test_requests_are_numbered_on_and_found_by_their_number_modulo_the_wire():
    log = RequestLog(first=0xFFFF)
    numbers = [log.add(t * S, HORIZON) for t in range(3)]
    assert numbers == [0xFFFF, 0x10000, 0x10001] and log.next_number == 0x10002
    assert log.offset(0x0000, 0xFFFF) == STRIDE  # the wire's 16 bits wrapped
    assert log.offset(0x10001, 0xFFFFFFFF) == 2 * STRIDE
    assert log.offset(0x10002, 0xFFFFFFFF) == -1  # not sent yet
    assert log.outstanding == 3


def test_answered_requests_are_forgotten_past_the_horizon_settled_ones_at_once():
    log = RequestLog()
    log.add(0, HORIZON)
    log.settle(0, ANSWERED)
    log.add(1 * S, HORIZON)
    log.settle(STRIDE, SETTLED)
    log.add(2 * S, HORIZON)
    log.settle(2 * STRIDE, TIMED_OUT)  # waits for its direction: kept whatever its age
    log.add(HORIZON, HORIZON)  # the first is exactly at the horizon: kept
    assert log.first == 0 and log.remembered_answers == 1
    log.add(HORIZON + 1, HORIZON)  # now past it, and the settled one behind it goes too
    assert log.first == 2 and log.entries[2] == TIMED_OUT and log.outstanding == 2


def test_a_log_checked_against_a_queue_keeps_what_the_queue_has_not_reached():
    class Queued(RequestLog):
        __slots__ = ()
        forgets_unchecked = False

    log = Queued()
    log.add(0, HORIZON)
    log.settle(0, SETTLED)
    log.add(S, HORIZON)
    assert log.first == 0  # its timeout was not checked yet
    log.checked = STRIDE
    log.add(2 * S, HORIZON)
    assert log.first == 1 and log.checked == 0


def test_at_most_the_cap_of_answered_requests_is_kept_whatever_their_age():
    log = RequestLog()
    for _ in range(MOST_REMEMBERED + 10):
        at = (log.add(0, HORIZON) - log.first) * STRIDE
        log.settle(at, ANSWERED)
    assert log.remembered_answers == MOST_REMEMBERED


def test_transmit_times_are_taken_while_outstanding_and_overdue_is_about_outstanding_ones():
    log = RequestLog()
    log.add(0, HORIZON)
    log.add(S, HORIZON)
    log.transmitted(0, 5)
    log.settle(STRIDE, ANSWERED)
    log.transmitted(STRIDE, 7)  # answered: too late to count
    log.transmitted(-1, 9)  # not found: nothing
    assert list(log.entries[1::STRIDE]) == [5, 0]
    assert log.any_overdue(2 * S, 2 * S) and not log.any_overdue(2 * S - 1, 2 * S)
    log.settle(0, ANSWERED)
    assert not log.any_overdue(10 * S, 2 * S)


def test_a_target_probed_once_a_second_holds_a_few_hundred_octets():
    """The dicts it replaced (outstanding, kernel times, answers) held about 1.2 KB a session."""
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        logs = [RequestLog() for _ in range(1000)]
        for second in range(30):
            for log in logs:
                at = (log.add(second * S, HORIZON) - log.first) * STRIDE
                log.transmitted(at, second * S + 1)
                log.settle(at, ANSWERED)
                log.checked = at + STRIDE
        grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename"))
    finally:
        tracemalloc.stop()
    assert all(entries.entries[2::STRIDE].count(OUTSTANDING) == 0 for entries in logs)
    assert grown / len(logs) < 400


def test_an_answer_keeps_the_kernel_s_transmit_time_only_between_the_clock_read_and_the_reply():
    log = RequestLog()
    for sent_ns in (1_000, 2_000, 3_000, 4_000):
        log.add(sent_ns, horizon_ns=10**9)
    log.transmitted(0, 1_050)  # plausible: kept as T1
    log.transmitted(STRIDE, 9_000)  # after the reply: another send's report, the clock read stands
    log.transmitted(2 * STRIDE, 2_500)  # before the clock read: the same
    assert [log.answer(at, receive_ns=5_000) for at in (0, STRIDE, 2 * STRIDE, 3 * STRIDE)] == [
        1_050,
        2_000,
        3_000,
        4_000,
    ]
    assert log.outstanding == 0 and log.entries[2::STRIDE].tolist() == [ANSWERED] * 4
