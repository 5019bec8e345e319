"""Segment metrics: counters per slice, segment and kind, no FlowMonID label, promtool-clean names."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry

from analyzer.insitu.exporter import SegmentCollector
from analyzer.insitu.segments import SegmentStore
from tests.analyzer.insitu.insitu_support import path_blocks
from tests.analyzer_support import T0


def test_segment_counters_sum_over_flows():
    store = SegmentStore()
    store.add(path_blocks([[100], [100], [100], [97]], flow=1), T0)
    store.add(path_blocks([[50], [50], [50], [49]], flow=2), T0)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SegmentCollector(store))
    text = generate_latest(registry).decode()
    assert 'xnet_segment_lost_packets_total{kind="link",segment="city1a>prov1",slice="video"} 4.0' in text
    assert 'xnet_segment_packets_total{kind="end-to-end",segment="cnty1a>prov1",slice="video"} 150.0' in text
    assert 'xnet_segment_blocks_total{kind="node",segment="city1a",slice="video"} 2.0' in text
    assert 'xnet_segment_delay_seconds{kind="link",segment="cnty1a>city1a",slice="video"} 0.001' in text
    samples = [line for line in text.splitlines() if not line.startswith("#")]
    assert samples and not any("flow" in line for line in samples)  # no FlowMonID label
