"""One target's recent requests, as its prober's session matches replies against them.

A session numbers its requests one after the other, so the requests of the last few timeouts
are a run of consecutive numbers: they are kept in send order in one array of int64 triples
(the clock read before sending, the kernel's transmit time or 0, the request's state), not
as a dict entry, a key and a value object per request. At a probe a second with a 2 s
timeout a target holds about five triples, 120 octets, where the dicts held about 1.2 KB.

States: sent and not settled (`OUTSTANDING`), answered (a later copy is a duplicate),
`TIMED_OUT` but not reported yet (STAMP waits one more timeout for the loss's direction), and
`SETTLED` lost (a reply now is late). Timeouts are checked in send order from `checked`, the
first request whose timeout has not been looked at. The oldest requests are forgotten as new
ones come: settled ones at once, answered ones once older than the duplicate horizon or
beyond the cap; a log whose owner checks timeouts against a queue of its own, one entry per
request (ICMPv6's, shared by every target), forgets only requests whose timeout was checked.
"""

from __future__ import annotations

from array import array

OUTSTANDING = 0
ANSWERED = 1
TIMED_OUT = 2
SETTLED = 3
NO_KERNEL_TIME = 0  # no transmit report (yet): the clock read before sending stands
STRIDE = 3  # int64s per request: T1 read before sending, kernel T1, state
# The most requests a target keeps after their timeout was checked, whatever their age: far
# more than a probe a second holds (about five), few enough that ICMPv6's 16-bit sequence
# numbers on the wire stay unambiguous within it.
MOST_REMEMBERED = 4096


class RequestLog:
    """A target's requests of the last few timeouts, oldest first (module docstring)."""

    __slots__ = ("entries", "first", "checked", "outstanding")
    # Whether requests whose timeout was not checked yet may be forgotten (module docstring).
    forgets_unchecked = True

    def __init__(self, first: int = 0) -> None:
        self.entries = array("q")  # STRIDE int64s per request
        self.first = first  # the number of the oldest request kept
        self.checked = 0  # offset of the first request whose timeout was not checked yet
        self.outstanding = 0  # requests in state OUTSTANDING

    @property
    def next_number(self) -> int:
        return self.first + len(self.entries) // STRIDE

    def add(self, sent_ns: int, horizon_ns: int) -> int:
        """Log a request sent at `sent_ns`, after forgetting the oldest checked ones that are
        settled, or answered more than `horizon_ns` before it (or beyond the cap); returns
        its number."""
        entries = self.entries
        end = len(entries) if self.forgets_unchecked else self.checked
        drop = 0
        oldest_kept = sent_ns - horizon_ns
        over_cap = len(entries) - (MOST_REMEMBERED - 1) * STRIDE  # room for this one
        while drop < end:
            state = entries[drop + 2]
            if state == SETTLED or (state == ANSWERED and (entries[drop] < oldest_kept or drop < over_cap)):
                drop += STRIDE
            else:
                break
        if drop:
            del entries[:drop]
            self.checked = self.checked - drop if self.checked > drop else 0
            self.first += drop // STRIDE
        number = self.first + len(entries) // STRIDE
        entries.extend((sent_ns, NO_KERNEL_TIME, OUTSTANDING))
        self.outstanding += 1
        return number

    def offset(self, number: int, mask: int) -> int:
        """Where request `number` (as the wire carries it: modulo mask + 1) is kept, or -1."""
        at = ((number - self.first) & mask) * STRIDE
        return at if at < len(self.entries) else -1

    def transmitted(self, at: int, kernel_sent_ns: int) -> None:
        """The kernel's transmit time of the request at `at`, while it is outstanding."""
        entries = self.entries
        if 0 <= at < len(entries) and entries[at + 2] == OUTSTANDING:
            entries[at + 1] = kernel_sent_ns

    def settle(self, at: int, state: int) -> None:
        """An outstanding request at `at` answered, timed out or lost."""
        self.entries[at + 2] = state
        self.outstanding -= 1

    def answer(self, at: int, receive_ns: int) -> int:
        """The outstanding request at `at` answered by a reply received at `receive_ns`; its
        T1, kept in place of the clock read: the kernel's transmit time when it lies between
        the clock read before the send and the reply's arrival, else the clock read.
        Transmit timestamps are matched to sends by the kernel's count of them, and a send
        the kernel counted but then refused (a full queue) shifts later matches until the
        count realigns on a report numbered past it (`transmit_reports`): such a time can
        come after the reply or belong to another probe, and a negative round trip would
        make the agent's window refused."""
        entries = self.entries
        t1, kernel_sent_ns = entries[at], entries[at + 1]
        if kernel_sent_ns != NO_KERNEL_TIME and t1 <= kernel_sent_ns <= receive_ns:
            t1 = entries[at] = kernel_sent_ns
        self.settle(at, ANSWERED)
        return t1

    def any_overdue(self, now_ns: int, timeout_ns: int) -> bool:
        """Whether an outstanding request is past its timeout."""
        entries = self.entries
        at, end = self.checked, len(entries)
        while at < end and now_ns - entries[at] >= timeout_ns:
            if entries[at + 2] == OUTSTANDING:
                return True
            at += STRIDE
        return False

    @property
    def remembered_answers(self) -> int:
        """Answered requests held for recognising duplicates."""
        return self.entries[2::STRIDE].count(ANSWERED)
