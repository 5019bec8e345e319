"""The per-session replay window over sequence numbers and signed timestamps."""

from __future__ import annotations

from collector.reflector.replay import MAX_REWIND_NS, WINDOW, ReplayWindow, stale

S = 1_000_000_000
T = 1_800_000_000 * S  # a sender timestamp, ns since 1970


def test_each_number_is_answered_once_also_when_late():
    w = ReplayWindow()
    assert [w.admit(seq, T + seq) for seq in (1, 3, 2)] == [True, True, True]
    assert [w.admit(seq, T + seq) for seq in (1, 2, 3)] == [False, False, False]


def test_a_number_behind_the_window_is_a_replay():
    w = ReplayWindow()
    assert w.admit(0, T)
    assert w.admit(WINDOW + 5, T + S)
    assert not w.admit(1, T + 1)  # never seen, but too far behind and signed earlier


def test_a_sender_numbering_again_with_a_newer_timestamp_restarts_the_window():
    w = ReplayWindow()
    for seq in range(100, 110):
        assert w.admit(seq, T + seq)
    assert w.admit(0, T + 200)  # the sender restarted
    assert not w.admit(105, T + 105)  # a request recorded before the restart, though 105 is ahead of 0
    assert w.admit(1, T + 201)


def test_numbers_wrap_around_2_to_the_32():
    w = ReplayWindow()
    assert w.admit(0xFFFFFFFF, T)
    assert w.admit(0, T + 1) and w.admit(1, T + 2)
    assert not w.admit(0xFFFFFFFF, T)


def test_a_number_ahead_but_signed_long_before_the_newest_is_a_replay():
    w = ReplayWindow()
    assert w.admit(10, T)
    assert not w.admit(20, T - MAX_REWIND_NS - 1)
    assert w.admit(20, T - S)  # a sender clock stepped back a little is still answered


def test_stale_compares_the_signed_timestamp_with_the_arrival():
    assert stale(T, T + 61 * S, 60 * S)
    assert not stale(T, T + 59 * S, 60 * S)
    assert not stale(T + S, T, 60 * S)  # a sender clock ahead is not a replay
