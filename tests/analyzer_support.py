"""Windows, batches, a recording SLA tracker and stores that use it, for the analyzer's tests."""

from __future__ import annotations

from analyzer.store.memory import WindowStore
from collector.contract.examples import example_health, example_window
from collector.contract.records import RTT_BUCKETS_NS, CollectorHealth, FlowId, PathKey, PathObservation, PathWindow
from collector.contract.shipment import ShipmentBatch

W = 10_000_000_000  # one 10 s interval in ns
T0 = 170_000_000  # an interval number in 2023, so times look real


def window(
    seq: int,
    *,
    source: str = "cnty1a",
    target: str = "core",
    slice_: str = "video",
    kind: str = "stamp",
    sent: int = 10,
    lost: int = 0,
    rtt_bucket: int = 3,
    p99_ns: int = 4_900_000,
) -> PathWindow:
    received = sent - lost
    buckets = [0] * (len(RTT_BUCKETS_NS) + 1)
    buckets[rtt_bucket] = received
    delays = {
        "rtt_min_ns": 3_000_000,
        "rtt_p50_ns": 4_000_000,
        "rtt_p90_ns": 4_500_000,
        "rtt_p99_ns": p99_ns,
        "rtt_max_ns": p99_ns,
        "ipdv_mean_abs_ns": 100_000,
        "pdv_p99_ns": 1_900_000,
    }
    return example_window(
        PathKey(source, target, slice_, kind),
        seq,
        interval_ns=W,
        sent=sent,
        received=received,
        lost_forward=lost,
        rtt_buckets=tuple(buckets),
        rtt_sum_ns=4_000_000 * received,
        **(delays if received else dict.fromkeys(delays)),  # no reply, no delays
    )


def batch(*windows: PathWindow, site: str = "cnty1a", **extra) -> ShipmentBatch:
    return ShipmentBatch(site, tuple(windows), created_ns=windows[-1].end_ns if windows else 0, **extra)


def observation(
    source: str = "cnty1a",
    target: str = "core",
    slice_: str = "video",
    hops: tuple = ("fd00::a", None, "fd00::1"),
    observed_ns: int = T0 * W,
) -> PathObservation:
    return PathObservation(source, target, slice_, FlowId("udp", 0x12345, 33434, 862), hops, True, observed_ns)


def health(site: str = "cnty1a", observed_ns: int = T0 * W, spool_depth: int = 0) -> CollectorHealth:
    return example_health(site, observed_ns=observed_ns, spool_depth=spool_depth)


def settled(seq: int) -> int:
    """A wall-clock time at which interval `seq`'s window has just been shipped."""
    return (seq + 1) * W + W // 10


class RecordingTracker:
    """Stands in for analyzer.sla.verdicts.SlaTracker where a test checks what the store feeds in."""

    def __init__(self, policy, interval_s: float, path: PathKey | None = None) -> None:
        self.policy, self.interval_s, self.path = policy, interval_s, path
        self.added = []

    def add(self, stats) -> None:
        self.added.append(stats)

    def verdict(self, now_ns: int):
        return ("verdict", self.path, len(self.added), now_ns)

    def to_state(self) -> dict:
        return {"added": len(self.added)}

    @classmethod
    def from_state(cls, state: dict, policy=None):
        tracker = cls(policy, 10.0)
        tracker.added = [None] * state["added"]
        return tracker


class Policy:
    """Just enough of an SlaPolicy for RecordingTracker."""

    def __init__(self, slice_name: str, unavailable_loss: float = 0.75) -> None:
        self.slice = slice_name
        self.unavailable_loss = unavailable_loss


def recording_store(**options) -> WindowStore:
    """A store whose trackers record what they are fed, for slices video and egov."""
    options.setdefault("catch_up_s", 0)
    return WindowStore({"video": Policy("video"), "egov": Policy("egov")}, tracker_type=RecordingTracker, **options)


def slice_tracker(store: WindowStore, name: str) -> RecordingTracker:
    return store._slices[name].tracker
