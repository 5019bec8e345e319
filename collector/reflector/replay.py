"""Replay protection for authenticated STAMP sessions (RFC 8762 authenticated mode, RFC 8972 HMAC).

The HMAC proves who wrote a request, not that it is new: a recorded request verifies as
well the second time. Each authenticated session keeps a sliding window over the sender's
sequence numbers, as IPsec does (RFC 4303 section 3.4.3): a number seen already, or fallen
behind the window, is a replay, unless its (signed) timestamp is newer than anything the
session answered, which is a sender that started numbering again. A request whose
timestamp is older than that restart is refused whatever its number. When both clocks
claim synchronisation, a request older than `max_age` is stale even for a session the
reflector has never seen (after a restart of the reflector, or an eviction).
"""

from __future__ import annotations

from dataclasses import dataclass

WINDOW = 64  # sequence numbers remembered behind the newest: reordering tolerated
MAX_REWIND_NS = 600 * 1_000_000_000  # a number ahead of the window, signed this much earlier, is a replay
_HALF = 1 << 31
_MASK32 = 0xFFFFFFFF
_WINDOW_MASK = (1 << WINDOW) - 1

REPLAY = "replay"
STALE = "stale"


@dataclass(slots=True)
class ReplayWindow:
    """One session's record of the sequence numbers and timestamps it answered."""

    top_seq: int = -1  # the newest number answered; -1 before the first
    seen: int = 0  # bit i set: top_seq - i was answered
    top_ts_ns: int = 0  # the newest sender timestamp answered
    floor_ts_ns: int = 0  # the timestamp of the request that restarted the numbering

    def admit(self, seq: int, ts_ns: int) -> bool:
        """True for a request not answered before (and record it); False for a replay."""
        if self.top_seq < 0:
            self.top_seq, self.seen, self.top_ts_ns = seq, 1, ts_ns
            return True
        if ts_ns < self.floor_ts_ns:
            return False  # signed before the numbering restarted
        ahead = (seq - self.top_seq) & _MASK32
        if 0 < ahead < _HALF:
            if ts_ns < self.top_ts_ns - MAX_REWIND_NS:
                return False  # a number from long ago, ahead only because the numbers wrapped
            self.seen = ((self.seen << ahead) | 1) & _WINDOW_MASK if ahead < WINDOW else 1
            self.top_seq = seq
            self.top_ts_ns = max(self.top_ts_ns, ts_ns)
            return True
        behind = (self.top_seq - seq) & _MASK32
        if behind < WINDOW and not (self.seen >> behind) & 1:
            self.seen |= 1 << behind  # late, but the first time
            self.top_ts_ns = max(self.top_ts_ns, ts_ns)
            return True
        if ts_ns > self.top_ts_ns:
            self._restart(seq, ts_ns)  # the sender numbers again from a new start
            return True
        return False

    def _restart(self, seq: int, ts_ns: int) -> None:
        self.top_seq, self.seen, self.top_ts_ns, self.floor_ts_ns = seq, 1, ts_ns, ts_ns


def stale(ts_ns: int, receive_ns: int, max_age_ns: int) -> bool:
    """A signed timestamp older than `max_age_ns` at its arrival (both clocks synchronised)."""
    return receive_ns - ts_ns > max_age_ns
