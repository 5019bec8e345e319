"""Sites, windows and the way they split over partitions, for the tests of partitioned analysis:
the same windows go to one analyzer and to the partitions, and the slice verdicts must agree."""

from __future__ import annotations

from dataclasses import replace

from collector.contract.shipment import ShipmentBatch
from tests.analyzer_support import T0, window

SITES = tuple(f"cnty{i}" for i in range(6))
TARGETS = ("core", "prov1")
SLICES = ("video", "egov")
INTERVALS = 14
NOW_NS = (T0 + INTERVALS + 5) * 10_000_000_000  # after every window; the stores never close by time


def lost_in(site: str, slice_: str, seq: int) -> int:
    """A story the verdicts must follow: egov loses heavily on two sites for a while, video a
    little on one site later on."""
    step = seq - T0
    if slice_ == "egov" and site in ("cnty1", "cnty2") and 3 <= step <= 8:
        return 40
    if slice_ == "video" and site == "cnty3" and step >= 6:
        return 3
    return 0


def site_batch(site: str, seq: int) -> ShipmentBatch:
    windows = []
    for slice_ in SLICES:
        for target in TARGETS:
            lost = lost_in(site, slice_, seq)
            w = window(seq, source=site, target=target, slice_=slice_, sent=200, lost=lost, rtt_bucket=3 + lost % 3)
            windows.append(replace(w, clock_error_ns=10_000 * (1 + SITES.index(site))))
    return ShipmentBatch(site, tuple(windows), created_ns=windows[-1].end_ns)
