"""Example records: the one place that spells out a whole record, for the API's documentation,
the tests and the benchmarks.

Every field has a plausible value; keyword arguments override any of them, so a caller names
only the fields whose values matter to it. The window is a healthy one: ten probes, all back
within 3-5 ms, clocks not synchronised (no one-way delays), path traced.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from collector.contract.records import RTT_BUCKETS_NS, CollectorHealth, PathKey, PathWindow

EXAMPLE_KEY = PathKey("cnty1a", "core", "video", "stamp")
_REPLIES_BUCKET = RTT_BUCKETS_NS.index(5_000_000)  # (2 ms, 5 ms]: where every reply lands

_WINDOW = PathWindow(
    key=EXAMPLE_KEY,
    target_address="fd00::1",
    seq=0,
    start_ns=0,
    end_ns=10_000_000_000,
    sent=10,
    received=10,
    lost_forward=0,
    lost_reverse=0,
    lost_unknown=0,
    duplicates=0,
    reordered=0,
    rtt_buckets=tuple(10 if i == _REPLIES_BUCKET else 0 for i in range(len(RTT_BUCKETS_NS) + 1)),
    rtt_sum_ns=40_000_000,
    rtt_min_ns=3_000_000,
    rtt_p50_ns=4_000_000,
    rtt_p90_ns=4_500_000,
    rtt_p99_ns=4_900_000,
    rtt_max_ns=4_900_000,
    ipdv_mean_abs_ns=100_000,
    pdv_p99_ns=1_900_000,
    forward_owd_p50_ns=None,
    reverse_owd_p50_ns=None,
    forward_owd_p99_ns=None,
    reverse_owd_p99_ns=None,
    clock_error_ns=None,
    dscp_remarked=0,
    reflector_hop_limit=252,
    reply_hop_limit=252,
    path_fingerprint="0123456789abcdef",
    icmp_errors=0,
)

_HEALTH = CollectorHealth(
    site=EXAMPLE_KEY.source,
    observed_ns=_WINDOW.end_ns,
    scheduling_lag_p99_ns=200_000,
    scheduling_lag_max_ns=900_000,
    probes_sent_total=1000,
    send_errors_total=0,
    receive_errors_total=0,
    socket_drops_total=0,
    cpu_seconds_total=1.5,
    sessions=12,
    windows_dropped_total=0,
    spool_depth=0,
)


def example_window(
    key: PathKey | None = None, seq: int = 0, *, interval_ns: int = 10_000_000_000, **fields: Any
) -> PathWindow:
    """Window `seq` of path `key` (EXAMPLE_KEY if None), aligned on `interval_ns`, with `fields` overridden.
    When `received` is overridden and the histogram is not, the histogram and the RTT sum follow
    it, so the window's counts still add up as intake checks them."""
    aligned: dict[str, Any] = {
        "key": EXAMPLE_KEY if key is None else key,
        "seq": seq,
        "start_ns": seq * interval_ns,
        "end_ns": (seq + 1) * interval_ns,
    }
    received = fields.get("received")
    if received is not None and "rtt_buckets" not in fields:
        aligned["rtt_buckets"] = tuple(received if i == _REPLIES_BUCKET else 0 for i in range(len(RTT_BUCKETS_NS) + 1))
        aligned["rtt_sum_ns"] = received * (_WINDOW.rtt_sum_ns // _WINDOW.received)
    return replace(_WINDOW, **(aligned | fields))


def example_health(site: str = EXAMPLE_KEY.source, **fields: Any) -> CollectorHealth:
    """A healthy agent's state at the end of example window 0, with `fields` overridden."""
    return replace(_HEALTH, **({"site": site} | fields))
