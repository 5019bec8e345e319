"""A capture point wired as `xnetmon capture` and the agent wire it: the aggregator at the
sampling rate, the meters that see every packet, and a live capture on loopback."""

from __future__ import annotations

import threading
import time

import pytest

from collector.capture.altmark import MarkingPoint
from collector.capture.altmark_sender import AltMarkSender, Marker
from collector.capture.points import CaptureOptions, capture_meters, open_live_capture
from collector.capture.tcp_rtt import PassiveTcpRtt
from collector.traffic.classifier import SliceClassifier

CLASSIFIER = SliceClassifier.default()


def test_a_plain_capture_has_only_its_aggregator():
    meters = capture_meters("capture:eth0", CLASSIFIER, CaptureOptions(sampling_rate=100))
    assert (meters.aggregator.exporter, meters.aggregator.sampling_rate) == ("capture:eth0", 100)
    assert (meters.tcp_rtt, meters.marking, meters.observers) == (None, None, ())


def test_passive_meters_see_every_packet_rtt_first():
    meters = capture_meters(
        "capture:eth0", CLASSIFIER, CaptureOptions(sampling_rate=10, tcp_rtt=True, altmark_point="edge-in")
    )
    assert isinstance(meters.tcp_rtt, PassiveTcpRtt) and isinstance(meters.marking, MarkingPoint)
    assert meters.observers == (meters.tcp_rtt, meters.marking) and meters.marking.name == "edge-in"


@pytest.mark.parametrize("options", [CaptureOptions(sampling_rate=0), CaptureOptions(active_timeout_s=0)])
def test_rates_and_timeouts_out_of_range_are_refused(options):
    with pytest.raises(ValueError):
        capture_meters("capture:eth0", CLASSIFIER, options)


@pytest.mark.root
def test_a_live_capture_on_loopback_feeds_the_aggregator_and_the_marking_point():
    capture, meters = open_live_capture("lo", CLASSIFIER, CaptureOptions(altmark_point="lo"), seed=1)
    with capture:
        assert (capture.interface, meters.aggregator.exporter) == ("lo", "capture:lo")
        runner = threading.Thread(target=capture.run)
        runner.start()
        try:
            with AltMarkSender("::1", 9, Marker(0xABCDE, block_packets=3), header="destination", dscp=26) as sender:
                sender.send(6)
            deadline = time.monotonic() + 10
            while meters.marking.packets.get((0xABCDE, 1), 0) < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            capture.stop()
            runner.join(10)
    assert {key: n for key, n in meters.marking.packets.items() if key[0] == 0xABCDE} == {
        (0xABCDE, 0): 3,
        (0xABCDE, 1): 3,
    }
    [flow] = [r for r in capture.records if r.destination_port == 9 and r.dscp == 26 and r.packets == 6]
    assert (flow.slice, flow.exporter) == ("egov", "capture:lo")


@pytest.mark.root
def test_a_missing_interface_is_an_os_error():
    with pytest.raises(OSError):
        open_live_capture("xt-none0", CLASSIFIER, CaptureOptions())
