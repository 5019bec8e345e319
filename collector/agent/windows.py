"""Per-path interval summaries: ProbeResults in, PathWindows out (docs/architecture.md, "The data that flows").

A probe belongs to the window in which it was sent, whatever time its fate settles; a
window is closed once every probe in it has had time to settle (its end plus the settle
delay: the timeout and the time loss direction may wait for a later reply). Windows are
aligned on wall-clock multiples of their length and numbered by that multiple, so all
agents' windows line up and a window's number is the same after an agent restarts.
Results are folded into their window's tally as they settle (`WindowTally`: counts and
compact arrays of the values the percentiles need), so an open window holds no ProbeResult.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Iterable, Sequence

from collector.contract.records import RTT_BUCKETS_NS, PathKey, PathWindow, ProbeResult
from collector.probes.summary import ProbeSummary, SummaryTally, percentile

_NO_DELAY = -(1 << 63)  # in place of a one-way delay a result lacks (no delay is that negative)
# A window takes over its probes' ProbeSummary statistics (counts, RTT percentiles, delay
# variation: the fields both records have, which mean the same in both) but these.
_SUMMARY_ONLY = tuple(name for name in ProbeSummary.__dataclass_fields__ if name not in PathWindow.__dataclass_fields__)


class WindowTally(SummaryTally):
    """One open window, folded as its results settle: a SummaryTally plus what only a window
    reports (one-way delays, clock error, remarking, the latest hop limits, ICMP errors)."""

    __slots__ = (
        "number",
        "earlier",
        "_one_way",
        "_clock_error_ns",
        "_remarked",
        "_latest_sent_ns",
        "_reflector_hop_limit",
        "_reply_hop_limit",
        "_icmp_errors",
    )

    def __init__(self, number: int) -> None:
        super().__init__()
        self.number = number  # the window's: its start over the window length
        self.earlier: WindowTally | None = None  # the path's open window before this one
        # One-way delays, forward and reverse of each answer in turn (_NO_DELAY where one is
        # missing): STAMP with synchronised clocks only, which gives both at once.
        self._one_way: array[int] | None = None
        self._clock_error_ns: int | None = None
        self._remarked = 0
        self._latest_sent_ns = -1
        self._reflector_hop_limit: int | None = None  # of the latest probe sent
        self._reply_hop_limit: int | None = None
        self._icmp_errors = 0

    def add_to_window(self, result: ProbeResult, slice_dscp: int) -> None:
        self.add(result)
        if result.icmp_error:
            self._icmp_errors += 1
        if result.rtt_ns is None or result.duplicate:
            return
        forward, reverse = result.forward_owd_ns, result.reverse_owd_ns
        if forward is not None or reverse is not None:
            if self._one_way is None:
                self._one_way = array("q")
            self._one_way.append(_NO_DELAY if forward is None else forward)
            self._one_way.append(_NO_DELAY if reverse is None else reverse)
        error = result.clock_error_ns
        if error is not None and (self._clock_error_ns is None or error > self._clock_error_ns):
            self._clock_error_ns = error
        if (result.reflector_dscp is not None and result.reflector_dscp != slice_dscp) or (
            result.reply_dscp is not None and result.reply_dscp != slice_dscp
        ):
            self._remarked += 1
        if result.sent_ns > self._latest_sent_ns:  # the first of equals, as max() would pick
            self._latest_sent_ns = result.sent_ns
            self._reflector_hop_limit = result.reflector_hop_limit
            self._reply_hop_limit = result.reply_hop_limit

    def window(self, key: PathKey, target_address: str, window_ns: int, fingerprint: str | None) -> PathWindow:
        rtts = self.sorted_rtts()
        statistics = self.statistics(rtts)
        for name in _SUMMARY_ONLY:
            del statistics[name]
        buckets = [0] * (len(RTT_BUCKETS_NS) + 1)
        for rtt in rtts:
            buckets[bisect.bisect_left(RTT_BUCKETS_NS, rtt)] += 1  # a bound is inclusive (le)
        one_way = self._one_way or ()
        forward_p50, forward_p99 = _median_and_p99(one_way[0::2])
        reverse_p50, reverse_p99 = _median_and_p99(one_way[1::2])
        return PathWindow(
            **statistics,  # type: ignore[arg-type]
            key=key,
            target_address=target_address,
            seq=self.number,
            start_ns=self.number * window_ns,
            end_ns=(self.number + 1) * window_ns,
            rtt_buckets=tuple(buckets),
            rtt_sum_ns=sum(rtts),
            forward_owd_p50_ns=forward_p50,
            reverse_owd_p50_ns=reverse_p50,
            forward_owd_p99_ns=forward_p99,
            reverse_owd_p99_ns=reverse_p99,
            clock_error_ns=self._clock_error_ns,
            dscp_remarked=self._remarked,
            reflector_hop_limit=self._reflector_hop_limit,
            reply_hop_limit=self._reply_hop_limit,
            path_fingerprint=fingerprint,
            icmp_errors=self._icmp_errors,
        )


def _median_and_p99(values: Sequence[int]) -> tuple[int | None, int | None]:
    ordered = sorted(v for v in values if v != _NO_DELAY)
    if not ordered:
        return None, None
    return percentile(ordered, 0.5), percentile(ordered, 0.99)


class PathWindows:
    """Folds one path's results into its open windows and hands out the ones that are settled.
    It is its path's result handler (calling it adds a result), so a path keeps no bound
    method for it. What names the path is the subclass's (`path_key`)."""

    __slots__ = ("target_address", "window_ns", "settle_ns", "slice_dscp", "fingerprint", "_latest")

    def __init__(self, target_address: str, window_ns: int, settle_ns: int, slice_dscp: int) -> None:
        self.target_address = target_address
        self.window_ns = window_ns
        self.settle_ns = settle_ns
        self.slice_dscp = slice_dscp
        self.fingerprint: str | None = None
        # The newest open window, linked to the earlier ones still settling (a few at most).
        self._latest: WindowTally | None = None

    def add(self, result: ProbeResult) -> None:
        number = result.sent_ns // self.window_ns
        tally = self._latest
        if tally is None or tally.number != number:
            tally = self._tally(number)
        tally.add_to_window(result, self.slice_dscp)

    __call__ = add

    def _tally(self, number: int) -> WindowTally:
        """The open window `number`, opened now if it was not."""
        newer, tally = None, self._latest
        while tally is not None and tally.number > number:
            newer, tally = tally, tally.earlier
        if tally is not None and tally.number == number:
            return tally
        opened = WindowTally(_shared_number(number))
        opened.earlier = tally
        if newer is None:
            self._latest = opened
        else:
            newer.earlier = opened
        return opened

    def add_all(self, results: Iterable[ProbeResult]) -> None:
        for result in results:
            self.add(result)

    def close_ready(self, now_ns: int) -> list[PathWindow]:
        """Windows whose end plus the settle delay has passed, oldest first."""
        last_ready = (now_ns - self.settle_ns) // self.window_ns - 1  # (n + 1) * window + settle <= now
        newer, tally = None, self._latest
        while tally is not None and tally.number > last_ready:
            newer, tally = tally, tally.earlier
        if tally is None:
            return []
        if newer is None:
            self._latest = None
        else:
            newer.earlier = None
        return self._windows(tally)

    def close_all(self) -> list[PathWindow]:
        """Everything still open (at shutdown, after the sessions were flushed)."""
        latest, self._latest = self._latest, None
        return self._windows(latest)

    def path_key(self) -> PathKey:
        raise NotImplementedError

    def _windows(self, latest: WindowTally | None) -> list[PathWindow]:
        """The windows of `latest` and those before it, oldest first."""
        if latest is None:
            return []
        key = self.path_key()
        windows = []
        while latest is not None:
            windows.append(latest.window(key, self.target_address, self.window_ns, self.fingerprint))
            latest = latest.earlier
        windows.reverse()
        return windows


class WindowBuilder(PathWindows):
    """The open windows of the path `key`."""

    __slots__ = ("key",)

    def __init__(self, key: PathKey, target_address: str, window_ns: int, settle_ns: int, slice_dscp: int) -> None:
        super().__init__(target_address, window_ns, settle_ns, slice_dscp)
        self.key = key

    def path_key(self) -> PathKey:
        return self.key


# One int object per window number, shared by every path's tally of that window; the few
# latest are enough, since paths open the same windows at about the same time.
_window_numbers: dict[int, int] = {}


def _shared_number(number: int) -> int:
    shared = _window_numbers.get(number)
    if shared is None:
        if len(_window_numbers) >= 16:
            _window_numbers.clear()
        shared = _window_numbers[number] = number
    return shared
