"""The reflector's rate limits: a token bucket per source prefix, under one global bucket.

A budget belongs to a prefix (by default /64 for IPv6, /32 for IPv4), so a host cannot
multiply its budget with the many addresses of its own prefix. The table of buckets is
bounded; when it is full, only a bucket that has refilled makes room (dropping it changes
nothing: a new bucket starts full), and a prefix that finds no room shares one overflow
bucket with every other such prefix. No bucket is ever reset early, so spraying source
addresses buys nobody a fresh burst. The global bucket bounds the replies per second
whatever the number of sources.
"""

from __future__ import annotations

from dataclasses import dataclass

RATE_LIMITED = "rate_limited"
GLOBAL_RATE_LIMITED = "global_rate_limited"
RECLAIM_SCAN = 4  # buckets looked at for room when the table is full: bounds the work per newcomer


@dataclass(frozen=True, slots=True)
class RateLimits:
    per_prefix_pps: float = 1000.0  # 0: no per-prefix limit
    burst: int = 200
    global_pps: float = 20_000.0  # 0: no global limit
    global_burst: int = 2_000
    prefix_v6: int = 64
    prefix_v4: int = 32
    table_size: int = 65_536  # prefixes with a bucket of their own

    def __post_init__(self) -> None:
        # IPv6 keys are at least 5 octets and IPv4 keys at most 4: the two never collide.
        if not 33 <= self.prefix_v6 <= 128:
            raise ValueError(f"rate_prefix_v6: expected 33..128, got {self.prefix_v6}")
        if not 1 <= self.prefix_v4 <= 32:
            raise ValueError(f"rate_prefix_v4: expected 1..32, got {self.prefix_v4}")
        for name in ("per_prefix_pps", "global_pps"):
            if not 0 <= getattr(self, name) <= 1e9:
                raise ValueError(f"{name}: expected 0..1e9 packets per second, got {getattr(self, name)}")
        for name in ("burst", "global_burst", "table_size"):
            if not 1 <= getattr(self, name) <= 10_000_000:
                raise ValueError(f"{name}: expected 1..10000000, got {getattr(self, name)}")

    @property
    def enabled(self) -> bool:
        return self.per_prefix_pps > 0 or self.global_pps > 0


class _TokenBucket:
    __slots__ = ("tokens", "last_ns")

    def __init__(self, tokens: float, now_ns: int) -> None:
        self.tokens = tokens
        self.last_ns = now_ns


def _prefix_cut(prefix_len: int) -> tuple[int, int]:
    """(whole octets, mask of the partial octet or 0) of a prefix length."""
    octets, bits = divmod(prefix_len, 8)
    return octets, (0xFF << (8 - bits)) & 0xFF if bits else 0


class RateLimiter:
    """Charges one token per admitted request; written by the reflector's thread alone."""

    def __init__(self, limits: RateLimits, now_ns: int) -> None:
        self.limits = limits
        self._rate = limits.per_prefix_pps / 1e9  # tokens per nanosecond
        self._burst = float(limits.burst)
        self._global_rate = limits.global_pps / 1e9
        self._global_burst = float(limits.global_burst)
        # The global bucket's state lives here, not in a _TokenBucket: one indirection less per request.
        self._global_tokens = self._global_burst
        self._global_last_ns = now_ns
        self._overflow = _TokenBucket(self._burst, now_ns)
        self._table: dict[bytes, _TokenBucket] = {}
        self._cut6 = _prefix_cut(limits.prefix_v6)
        self._cut4 = _prefix_cut(limits.prefix_v4)
        self.overflowed = 0  # requests charged to the shared overflow bucket

    def admit(self, source: bytes, now_ns: int) -> str | None:
        """None when the request may be answered (its tokens taken), else the refusal's reason.
        A request refused by one bucket takes no token from the other."""
        bucket = None
        if self._rate:
            key = self.prefix_key(source)
            bucket = self._table.get(key)
            if bucket is None:
                bucket = self._place(key, now_ns)
            if now_ns > bucket.last_ns:
                tokens = bucket.tokens + (now_ns - bucket.last_ns) * self._rate
                bucket.tokens = tokens if tokens < self._burst else self._burst
                bucket.last_ns = now_ns
            if bucket.tokens < 1:
                return RATE_LIMITED
        if self._global_rate:
            if now_ns > self._global_last_ns:
                tokens = self._global_tokens + (now_ns - self._global_last_ns) * self._global_rate
                self._global_tokens = tokens if tokens < self._global_burst else self._global_burst
                self._global_last_ns = now_ns
            if self._global_tokens < 1:
                return GLOBAL_RATE_LIMITED
            self._global_tokens -= 1
        if bucket is not None:
            bucket.tokens -= 1
        return None

    def prefix_key(self, source: bytes) -> bytes:
        octets, mask = self._cut6 if len(source) == 16 else self._cut4
        if mask:
            return source[:octets] + bytes((source[octets] & mask,))
        return source[:octets]

    def _place(self, key: bytes, now_ns: int) -> _TokenBucket:
        table = self._table
        if len(table) >= self.limits.table_size:
            for _ in range(RECLAIM_SCAN):
                oldest_key = next(iter(table))
                oldest = table.pop(oldest_key)
                if oldest.tokens + max(0, now_ns - oldest.last_ns) * self._rate >= self._burst:
                    break  # refilled: the same as no bucket at all
                table[oldest_key] = oldest  # still draining: to the back of the line
            else:
                self.overflowed += 1
                return self._overflow
        bucket = table[key] = _TokenBucket(self._burst, now_ns)
        return bucket

    @property
    def tracked_prefixes(self) -> int:
        return len(self._table)
