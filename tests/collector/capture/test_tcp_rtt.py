"""Passive TCP RTT and retransmissions over scapy-built segments at known capture times."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt

from collector.capture.tcp_rtt import PassiveTcpRtt
from collector.contract.records import RTT_BUCKETS_S
from collector.traffic.classifier import SliceClassifier

CLIENT, SERVER = "2001:db8:1::10", "2001:db8:2::20"
CLIENT_PREFIX, SERVER_PREFIX = "2001:db8:1::/48", "2001:db8:2::/48"
MS = 1_000_000
VIDEO_TCLASS = 34 << 2


def segment(
    source,
    destination,
    flags,
    seq=0,
    ack=0,
    tsval=None,
    tsecr=0,
    payload=b"",
    *,
    sport=40000,
    dport=443,
    tclass=0,
    extension=None,
):
    options = [("NOP", None), ("NOP", None), ("Timestamp", (tsval, tsecr))] if tsval is not None else []
    tcp = TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack, options=options)
    if ":" in source:
        ip = IPv6(src=source, dst=destination, tc=tclass)
        if extension is not None:
            ip = ip / extension
    else:
        ip = IP(src=source, dst=destination, tos=tclass)
    return bytes(ip / tcp / payload)


def up(flags, seq=0, ack=0, tsval=None, tsecr=0, payload=b"", **kw):
    """Client to server, in the video slice."""
    return segment(CLIENT, SERVER, flags, seq, ack, tsval, tsecr, payload, tclass=VIDEO_TCLASS, **kw)


def down(flags, seq=0, ack=0, tsval=None, tsecr=0, payload=b"", **kw):
    """Server to client, best effort."""
    return segment(SERVER, CLIENT, flags, seq, ack, tsval, tsecr, payload, sport=443, dport=40000, **kw)


def feed(meter, timed_packets):
    for at_ms, packet in timed_packets:
        meter.observe(round(at_ms * MS), packet)
    return meter.report()


def handshake(client_tsval=100, server_tsval=5000):
    return [
        (0.0, up("S", seq=999, tsval=client_tsval)),
        (10.0, down("SA", seq=4999, ack=1000, tsval=server_tsval, tsecr=client_tsval)),
        (10.25, up("A", seq=1000, ack=5000, tsval=client_tsval + 1, tsecr=server_tsval)),
    ]


def test_handshake_gives_one_exact_sample_each_way():
    report = feed(PassiveTcpRtt(), handshake())
    towards_server = report.by_prefix[("video", SERVER_PREFIX)]
    towards_client = report.by_prefix[("best-effort", CLIENT_PREFIX)]
    assert towards_server.samples == 1
    assert towards_server.min_s == towards_server.p50_s == towards_server.p99_s == pytest.approx(0.010)
    assert towards_client.samples == 1 and towards_client.min_s == pytest.approx(0.00025)
    assert report.by_slice["video"].samples == 1 and report.by_slice["best-effort"].samples == 1
    assert report.by_slice["video"].retransmissions == 0


def test_one_sample_per_tsval_from_its_first_occurrence():
    packets = handshake() + [
        (20.0, up("A", seq=1000, ack=5000, tsval=200, tsecr=5000, payload=b"x" * 100)),
        (21.0, up("A", seq=1100, ack=5000, tsval=200, tsecr=5000, payload=b"x" * 100)),  # same tick
        (32.0, down("A", seq=5000, ack=1200, tsval=5001, tsecr=200)),
        (33.0, down("A", seq=5000, ack=1200, tsval=5001, tsecr=200)),  # duplicate ACK: no sample
    ]
    summary = feed(PassiveTcpRtt(), packets).by_prefix[("video", SERVER_PREFIX)]
    assert summary.samples == 2
    assert (summary.min_s, summary.max_s) == (pytest.approx(0.010), pytest.approx(0.012))


def test_every_data_segment_of_a_burst_times_the_echo_that_set_it_off():
    # The server's ACK leaves the capture point; the client answers it with a burst of three
    # segments sent in one clock tick, which reach the capture point one after the other
    # (queued beyond it): each is a sample, as the client's kernel times each one.
    data = b"d" * 100
    packets = handshake() + [
        (20.0, down("A", seq=5000, ack=1000, tsval=7000, tsecr=101)),
        (30.0, up("A", seq=1000, ack=5000, tsval=300, tsecr=7000, payload=data)),
        (31.0, up("A", seq=1100, ack=5000, tsval=300, tsecr=7000, payload=data)),
        (32.0, up("A", seq=1200, ack=5000, tsval=300, tsecr=7000, payload=data)),
        (33.0, up("A", seq=1100, ack=5000, tsval=300, tsecr=7000, payload=data)),  # retransmission: no sample
        (40.0, up("A", seq=1300, ack=5000, tsval=301, tsecr=7000, payload=data)),  # a later tick: not the burst
        (41.0, up("A", seq=1400, ack=5000, tsval=301, tsecr=7000)),  # no data: no sample
    ]
    summary = feed(PassiveTcpRtt(), packets).by_prefix[("best-effort", CLIENT_PREFIX)]
    # the handshake's 0.25 ms, then the burst's 10, 11 and 12 ms
    assert summary.samples == 4
    assert summary.sum_s == pytest.approx(0.00025 + 0.010 + 0.011 + 0.012)


def test_data_is_timed_by_its_acknowledgment_from_the_oldest_segment_it_covers():
    # As the sender's kernel times it, so that a capture point next to the sender sees what
    # the sender does: four segments sent at once, each pair acknowledged together.
    data = b"d" * 100
    packets = handshake() + [
        (20.0, up("A", seq=1000, ack=5000, tsval=300, tsecr=5000, payload=data)),
        (20.1, up("A", seq=1100, ack=5000, tsval=300, tsecr=5000, payload=data)),
        (20.2, up("A", seq=1200, ack=5000, tsval=300, tsecr=5000, payload=data)),
        (20.3, up("A", seq=1300, ack=5000, tsval=300, tsecr=5000, payload=data)),
        (40.0, down("A", seq=5000, ack=1200, tsval=6000, tsecr=300)),  # from the older of two: 20 ms
        (45.0, down("A", seq=5000, ack=1400, tsval=6005, tsecr=300)),  # 24.8 ms
        (46.0, down("A", seq=5000, ack=1400, tsval=6006, tsecr=300)),  # duplicate: covers nothing new
        (50.0, up("A", seq=1400, ack=5000, tsval=301, tsecr=6006, payload=data)),
        (60.0, up("A", seq=1400, ack=5000, tsval=311, tsecr=6006, payload=data)),  # retransmitted
        (70.0, down("A", seq=5000, ack=1500, tsval=6010, tsecr=311)),  # which one it answers is unknown (Karn)
    ]
    summary = feed(PassiveTcpRtt(), packets).by_prefix[("video", SERVER_PREFIX)]
    assert summary.samples == 3  # the SYN's 10 ms, then 20 and 24.8 ms
    assert summary.sum_s == pytest.approx(0.010 + 0.020 + 0.0248)


def test_an_older_tsval_is_not_timed_again():
    packets = handshake() + [  # pure ACKs, timed by their TSvals
        (20.0, up("A", seq=1000, ack=5000, tsval=300, tsecr=5000)),
        (21.0, up("A", seq=1000, ack=5000, tsval=250, tsecr=5000)),  # clock went back
        (30.0, down("A", seq=5000, ack=1000, tsval=5002, tsecr=250, payload=b"a")),
        (31.0, down("A", seq=5001, ack=1000, tsval=5003, tsecr=300, payload=b"b")),
    ]
    summary = feed(PassiveTcpRtt(), packets).by_prefix[("video", SERVER_PREFIX)]
    assert summary.samples == 2 and summary.max_s == pytest.approx(0.011)


def test_echo_of_a_tsval_retires_older_unanswered_ones():
    packets = handshake() + [
        (20.0, up("A", seq=1000, ack=5000, tsval=400, tsecr=5000)),
        (21.0, up("A", seq=1000, ack=5000, tsval=401, tsecr=5000)),
        (30.0, down("A", seq=5000, ack=1000, tsval=5004, tsecr=401, payload=b"a")),
        (31.0, down("A", seq=5001, ack=1000, tsval=5005, tsecr=400, payload=b"b")),  # too late to be a sample
    ]
    summary = feed(PassiveTcpRtt(), packets).by_prefix[("video", SERVER_PREFIX)]
    assert summary.samples == 2 and summary.min_s == pytest.approx(0.009)  # the handshake, and 401


def test_retransmitted_data_is_counted_and_reordering_is_not():
    data = b"d" * 1000
    packets = handshake() + [
        (20.0, up("A", seq=1000, ack=5000, tsval=201, tsecr=5000, payload=data)),
        (20.1, up("A", seq=3000, ack=5000, tsval=201, tsecr=5000, payload=data)),  # arrives early
        (20.2, up("A", seq=2000, ack=5000, tsval=201, tsecr=5000, payload=data)),  # fills the gap
        (30.0, up("A", seq=2000, ack=5000, tsval=211, tsecr=5000, payload=data)),  # retransmission
        (31.0, up("A", seq=2500, ack=5000, tsval=212, tsecr=5000, payload=data)),  # half seen: retransmission
        (32.0, up("A", seq=4000, ack=5000, tsval=213, tsecr=5000, payload=data)),
        (33.0, up("S", seq=999, tsval=214)),  # SYN again
        (34.0, up("A", seq=5000, ack=5000, tsval=215, tsecr=5000)),  # pure ACK: not data
    ]
    report = feed(PassiveTcpRtt(), packets)
    assert report.by_slice["video"].retransmissions == 3
    assert report.by_slice["best-effort"].retransmissions == 0


def test_sequence_numbers_wrap():
    top = (1 << 32) - 500
    packets = [
        (0.0, up("S", seq=top - 1, tsval=1)),
        (1.0, up("A", seq=top, tsval=2, payload=b"w" * 1000)),  # runs over 2**32
        (2.0, up("A", seq=500, tsval=3, payload=b"w" * 100)),
        (3.0, up("A", seq=100, tsval=4, payload=b"w" * 100)),  # inside the wrapped part: seen
    ]
    assert feed(PassiveTcpRtt(), packets).by_slice["video"].retransmissions == 1


def test_ipv4_uses_its_own_prefix_length():
    packets = [
        (0.0, segment("192.0.2.10", "198.51.100.20", "S", seq=1, tsval=10)),
        (7.0, segment("198.51.100.20", "192.0.2.10", "SA", seq=1, ack=2, tsval=70, tsecr=10, sport=443, dport=40000)),
    ]
    report = feed(PassiveTcpRtt(remote_prefix_len_v4=16), packets)
    assert report.by_prefix[("best-effort", "198.51.0.0/16")].min_s == pytest.approx(0.007)


def test_extension_headers_before_tcp_are_walked():
    packets = [
        (0.0, up("S", seq=1, tsval=10, extension=IPv6ExtHdrDestOpt())),
        (3.0, down("SA", seq=1, ack=2, tsval=70, tsecr=10, extension=IPv6ExtHdrDestOpt())),
    ]
    assert feed(PassiveTcpRtt(), packets).by_prefix[("video", SERVER_PREFIX)].min_s == pytest.approx(0.003)


def test_slices_come_from_the_classifier():
    classifier = SliceClassifier.from_rules([{"slice": "egov", "destination": ["2001:db8:2::/48"]}], default="data")
    report = feed(PassiveTcpRtt(classifier), handshake())
    assert set(report.by_slice) == {"egov", "data"}


def test_percentiles_follow_the_distribution():
    meter = PassiveTcpRtt()
    packets = []
    for i in range(100):  # RTTs of 1..100 ms
        packets.append((i * 1000.0, up("A", seq=1000 + i, ack=1, tsval=1000 + i, tsecr=1, payload=b"p")))
        packets.append((i * 1000.0 + i + 1, down("A", seq=1, ack=1001 + i, tsval=9000 + i, tsecr=1000 + i)))
    summary = feed(meter, packets).by_prefix[("video", SERVER_PREFIX)]
    assert summary.samples == 100
    assert summary.min_s == pytest.approx(0.001) and summary.max_s == pytest.approx(0.100)
    assert 0.030 <= summary.p50_s <= 0.050  # the 50th sample (50 ms) lies in the (30, 50] ms bucket
    assert 0.050 < summary.p90_s <= 0.100 and summary.p90_s <= summary.p99_s <= 0.100
    assert sum(summary.bucket_counts) == 100 and len(summary.bucket_counts) == len(RTT_BUCKETS_S) + 1
    assert summary.sum_s == pytest.approx(sum(range(1, 101)) / 1000)


def test_flow_table_is_bounded_and_idle_directions_expire():
    meter = PassiveTcpRtt(max_flows=4, idle_timeout_s=1.0)
    for port in range(10):
        meter.observe(port * MS, up("S", seq=1, tsval=1, sport=50000 + port))
    assert meter.report().flows == 4 and meter.evicted == 6
    meter.observe(5_000 * MS, up("S", seq=1, tsval=1, sport=60000))
    assert meter.report().flows == 1


def test_non_tcp_is_ignored_and_garbage_is_counted():
    meter = PassiveTcpRtt()
    meter.observe(0, bytes(IPv6(src=CLIENT, dst=SERVER) / UDP(dport=53)))
    assert meter.report().by_slice == {} and meter.malformed == 0
    truncated = up("S", seq=1, tsval=1)[:50]
    for garbage in (truncated, b"\x60" + b"\x00" * 10, b"\x70" * 60, b""):
        meter.observe(0, garbage)
    bad_option = bytearray(up("S", seq=1, tsval=1))
    bad_option[60 + 3] = 40  # the timestamp option's length runs past the header
    meter.observe(0, bytes(bad_option))
    assert meter.malformed == 5


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=120), st.sampled_from([0x60, 0x45, 0x4F, 0x00]), st.sampled_from([6, 0, 60, 44]))
def test_random_packets_never_escape_observe(tail, first_octet, next_header):
    """IPv6 or IPv4 headers over random bytes: counted as malformed or ignored, never raised."""
    head = bytearray(up("A", seq=1, tsval=1)[:40])
    head[0], head[6] = first_octet, next_header
    head[4:6] = len(tail).to_bytes(2, "big")
    meter = PassiveTcpRtt()
    meter.observe(0, bytes(head) + tail)
    meter.observe(1, bytes(head) + tail)
    assert meter.malformed <= 2 and meter.report().malformed == meter.malformed
