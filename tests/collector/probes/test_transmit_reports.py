"""Transmit reports matched to sends by the kernel's send number: in order, after a send the
kernel numbered and the socket did not count, across the 32-bit counter's wrap, and sends
whose report never comes forgotten."""

from __future__ import annotations

from collector.probes.transmit_reports import SEND_NUMBER_MASK, TX_REPORT_WAIT_NS, TransmitReports

MS = 1_000_000


def counting_from(number: int) -> TransmitReports[int]:
    """Reports whose next send is numbered `number`, reached as a socket would: reports of
    sends the count missed, each less than half the counter's range ahead."""
    reports: TransmitReports[int] = TransmitReports()
    at = 0  # the number of the next send
    while at != number:
        step = min(1 << 30, (number - at) & SEND_NUMBER_MASK)
        reports.reported((at + step - 1) & SEND_NUMBER_MASK)
        at = (at + step) & SEND_NUMBER_MASK
    assert len(reports) == 0
    return reports


def test_reports_find_their_sends_in_any_order():
    reports: TransmitReports[str] = TransmitReports()
    for name in "abc":
        reports.sent(name, 0)
    assert [reports.reported(2), reports.reported(0), reports.reported(1)] == ["c", "a", "b"]
    assert reports.reported(1) is None and len(reports) == 0


def test_a_report_numbered_past_the_count_realigns_it():
    reports: TransmitReports[str] = TransmitReports()
    reports.sent("a", 0)
    # "b" refused after the kernel numbered it 1: "c" is numbered 2, counted as 1
    reports.sent("c", 1 * MS)
    assert reports.reported(0) == "a"
    assert reports.reported(2) is None  # c's report: past the count, which counts on from it
    assert len(reports) == 0
    reports.sent("d", 2 * MS)
    assert reports.reported(3) == "d"


def test_a_late_report_behind_the_count_changes_nothing():
    reports: TransmitReports[str] = TransmitReports()
    for i in range(3):
        reports.sent(f"s{i}", 0)
    assert reports.reported(0) == "s0"
    assert reports.reported(0) is None  # again: behind the count, not a realignment
    assert len(reports) == 2 and reports.reported(1) == "s1"


def test_sends_match_across_the_wrap_of_the_kernels_32_bit_counter():
    reports = counting_from(SEND_NUMBER_MASK - 1)  # a counter just short of the wrap
    for i in range(4):
        reports.sent(i, 0)
    # the kernel's numbers: 2**32 - 2, 2**32 - 1, then 0 and 1
    assert [reports.reported(n) for n in (SEND_NUMBER_MASK - 1, SEND_NUMBER_MASK, 0, 1)] == [0, 1, 2, 3]


def test_a_report_past_the_count_realigns_it_across_the_wrap():
    reports = counting_from(SEND_NUMBER_MASK)  # the next send is numbered 2**32 - 1
    reports.sent(0, 0)
    # a send numbered 0 the count missed: the next is numbered 1, counted as 0
    reports.sent(1, 0)
    assert reports.reported(SEND_NUMBER_MASK) == 0
    assert reports.reported(1) is None and len(reports) == 0  # ahead across the wrap
    reports.sent(2, 0)
    assert reports.reported(2) == 2


def test_a_send_whose_report_never_comes_is_forgotten():
    reports: TransmitReports[int] = TransmitReports()
    reports.sent(0, 0)
    reports.sent(1, TX_REPORT_WAIT_NS)
    assert len(reports) == 2  # not yet overdue
    reports.sent(2, TX_REPORT_WAIT_NS + 1)
    assert len(reports) == 2 and reports.reported(0) is None
    assert reports.reported(1) == 1
