"""The passive RTT and alternate-marking metrics as a Prometheus scrape shows them."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from collector.capture.altmark import AltMark, MarkingPoint, SegmentLoss
from collector.capture.tcp_rtt import PassiveTcpRtt
from collector.outputs.prometheus.passive import PassiveCollector
from tests.collector.capture.test_tcp_rtt import MS, down, handshake, up

RTT_BUCKET_COUNT = 12 + 1  # RTT_BUCKETS_S and +Inf


def scrape(collector: PassiveCollector) -> dict[tuple[str, tuple], float]:
    registry = CollectorRegistry()
    registry.register(collector)
    samples = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_passive_rtt_histogram_and_retransmissions_per_slice():
    meter = PassiveTcpRtt()
    for at_ms, packet in handshake() + [
        (20.0, up("A", seq=1000, ack=5000, tsval=300, tsecr=5000, payload=b"x" * 10)),
        (20.5, up("A", seq=1000, ack=5000, tsval=301, tsecr=5000, payload=b"x" * 10)),  # retransmission
        (42.0, down("A", seq=5000, ack=1010, tsval=5009, tsecr=300)),  # answers which one? no sample
        (50.0, up("A", seq=1010, ack=5000, tsval=310, tsecr=5009, payload=b"x" * 10)),
        (72.0, down("A", seq=5000, ack=1020, tsval=5039, tsecr=310)),
    ]:
        meter.observe(round(at_ms * MS), packet)
    samples = scrape(PassiveCollector(meter))
    video = (("slice", "video"),)
    assert samples[("xnet_passive_rtt_seconds_count", video)] == 2  # 10 ms (handshake) and 22 ms
    assert samples[("xnet_passive_rtt_seconds_sum", video)] == 0.032
    assert samples[("xnet_passive_rtt_seconds_bucket", (("le", "0.01"), ("slice", "video")))] == 1
    assert samples[("xnet_passive_rtt_seconds_bucket", (("le", "0.02"), ("slice", "video")))] == 1
    assert samples[("xnet_passive_rtt_seconds_bucket", (("le", "0.03"), ("slice", "video")))] == 2
    assert samples[("xnet_tcp_retransmissions_total", video)] == 1
    assert samples[("xnet_tcp_retransmissions_total", (("slice", "best-effort"),))] == 0
    buckets = [key for key in samples if key[0] == "xnet_passive_rtt_seconds_bucket" and ("slice", "video") in key[1]]
    assert len(buckets) == RTT_BUCKET_COUNT


def test_altmark_packets_and_segment_loss():
    up_point, down_point = MarkingPoint("cnty1a"), MarkingPoint("prov1")
    for index in range(40):  # blocks of 10, colours 0 1 0 1; downstream misses packets 2 and 13
        mark = AltMark(77, (index // 10) % 2, index % 10 == 5)
        up_point.count(index * MS, mark)
        if index not in (2, 13):
            down_point.count(index * MS + 100_000, mark)
    segment = SegmentLoss(up_point, down_point)
    collector = PassiveCollector(points=[up_point, down_point], segments=[segment])
    samples = scrape(collector)
    assert samples[("xnet_altmark_packets_total", (("colour", "0"), ("flow_mon_id", "77"), ("point", "cnty1a")))] == 20
    assert samples[("xnet_altmark_packets_total", (("colour", "1"), ("flow_mon_id", "77"), ("point", "prov1")))] == 19
    assert samples[("xnet_altmark_block_loss_packets_total", (("segment", "cnty1a>prov1"),))] == 2
    up_point.flush()
    down_point.flush()
    assert scrape(collector)[("xnet_altmark_block_loss_packets_total", (("segment", "cnty1a>prov1"),))] == 2
    assert segment.blocks == 4


def test_nothing_configured_renders_nothing():
    assert scrape(PassiveCollector()) == {}
