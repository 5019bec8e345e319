"""Matching the kernel's transmit timestamps to the sends they report.

With SO_TIMESTAMPING and OPT_ID the kernel numbers each send on a socket and reports its
transmit time on the error queue with that number (`ee_data`, 32 bits). A socket counts its
own sends the same way and keeps each one here until its report comes. Shared by the STAMP
and ICMPv6 echo sockets, whose kernel T1 both depend on it.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

# A transmit report comes within milliseconds of its send; one still missing after this will
# not come (the datagram was dropped before the device), and its send is forgotten.
TX_REPORT_WAIT_NS = 2_000_000_000
SEND_NUMBER_MASK = 0xFFFF_FFFF  # the kernel's send counter is 32 bits and wraps
_HALF_RANGE = 1 << 31

Sent = TypeVar("Sent")


class TransmitReports(Generic[Sent]):
    """Sends waiting for their transmit report, keyed by the number the kernel gave them."""

    __slots__ = ("_next", "_pending")

    def __init__(self) -> None:
        self._next = 0  # the number the kernel gives the next send, modulo 2**32
        # kernel send number -> (what was sent, monotonic ns of the send), in send order
        self._pending: OrderedDict[int, tuple[Sent, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pending)

    def sent(self, item: Sent, now_ns: int) -> None:
        """Count a send the kernel accepted (a send refused before the kernel numbered it,
        no route for example, is not counted); forget sends whose report is overdue."""
        pending = self._pending
        pending[self._next] = (item, now_ns)
        self._next = (self._next + 1) & SEND_NUMBER_MASK
        while pending and now_ns - next(iter(pending.values()))[1] > TX_REPORT_WAIT_NS:
            pending.popitem(last=False)  # its report is not coming

    def reported(self, number: int) -> Sent | None:
        """The send that the report numbered `number` is about, or None when unknown."""
        found = self._pending.pop(number, None)
        if found is not None:
            return found[0]
        newest = (self._next - 1) & SEND_NUMBER_MASK
        if 0 < (number - newest) & SEND_NUMBER_MASK < _HALF_RANGE:
            # The kernel numbered a send this count missed (refused after it was numbered: a
            # full queue's ENOBUFS), so no later report would match its send again, and every
            # send would wait for one. Most likely this reports the newest send: count on from
            # it; the pending ones are numbered wrongly and go. Ahead is taken modulo 2**32
            # (half the range forward), since the kernel's counter wraps.
            self._next = (number + 1) & SEND_NUMBER_MASK
            self._pending.clear()
        return None
