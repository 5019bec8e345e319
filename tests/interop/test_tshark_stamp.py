"""Our STAMP reflector packets decoded by tshark's TWAMP-Test dissector.

Frames are IPv6/UDP around our payload, written with scapy's `wrpcap` and read back with
`tshark -r FILE -d udp.port==862,twamp.test -T fields -e twamp.test.<field> ...`.

How tshark 4.0 reads these packets (checked by the tests below):

- Without a TWAMP-Control conversation in the capture it cannot tell sender from
  reflector, and it dissects every `twamp.test` packet with the *reflector* layout, in
  both directions (source port 862 or destination port 862). A sender packet therefore
  shows its SSID as `mbz1` and MBZ octets as the receive timestamp.
- `twamp.test.mbz1` is the octet pair at offset 14, which RFC 8972 made the SSID.
- Timestamp and Receive Timestamp follow the Z bit of the packet's own Error Estimate;
  the Sender Timestamp is always read as NTP, whatever the sender's Z says.
- NTP seconds below 2^31 are placed in era 1 (2036-2104), as RFC 4330 suggests; a PTP
  value read as NTP lands there.
- NTP fractions are shown truncated to the nanosecond, so an NTP timestamp may read up to
  1 ns below the instant it was made from.
- Octets after offset 41 (the 3 MBZ octets and any TLVs) are shown as `twamp.test.padding`.
"""

from __future__ import annotations

import calendar
import subprocess
import time

import pytest
from scapy.layers.inet import UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from collector.wire.stamp import (
    ErrorEstimate,
    ReflectorPacket,
    SenderPacket,
    TimestampFormat,
    encode_reflector,
    encode_sender,
    encode_timestamp,
    ntp_to_ns,
    ptp_to_ns,
)
from collector.wire.stamp_reflect import ReceivedContext, SessionCounters
from collector.wire.stamp_tlv import ClassOfService, ExtraPadding
from tests.stamp_support import reflect_request

pytestmark = pytest.mark.tool("tshark")

FIELDS = [
    "seq_number",
    "timestamp",
    "error_estimate",
    "error_estimate.s",
    "error_estimate.z",
    "error_estimate.scale",
    "error_estimate.multiplier",
    "mbz1",
    "receive_timestamp",
    "sender_seq_number",
    "sender_timestamp",
    "sender_error_estimate",
    "mbz2",
    "sender_ttl",
    "padding",
]
RX_NS = 1_700_000_000_250_000_000
TX_NS = 1_700_000_000_750_123_456
T1_NS = 1_699_999_999_500_000_001


def tshark_decode(tmp_path, payloads: list[bytes], *, sport: int = 862, dport: int = 50000) -> list[dict[str, str]]:
    """Each payload as one IPv6/UDP frame, decoded by tshark: field name -> shown value.

    Fields that occur twice (the reflector's and the sender's Error Estimate bits) are
    joined with ';' in that order.
    """
    frames = [
        Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        / IPv6(src="2001:db8::1", dst="2001:db8::2", hlim=64)
        / UDP(sport=sport, dport=dport)
        / Raw(payload)
        for payload in payloads
    ]
    pcap = tmp_path / "stamp.pcap"
    wrpcap(str(pcap), frames)
    command = [
        "tshark",
        "-r",
        str(pcap),
        "-d",
        "udp.port==862,twamp.test",
        "-T",
        "fields",
        "-E",
        "separator=|",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=;",
    ]
    for name in FIELDS:
        command += ["-e", f"twamp.test.{name}"]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=60).stdout
    rows = [line.split("|") for line in out.splitlines()]
    assert len(rows) == len(payloads)
    return [dict(zip(FIELDS, row)) for row in rows]


def shown_ns(text: str) -> int:
    """'Nov 14, 2023 22:13:20.123456789 UTC' -> Unix nanoseconds."""
    month, day, year, clock, zone = text.replace(",", "").split()
    assert zone == "UTC"
    whole, fraction = clock.split(".")
    seconds = calendar.timegm(time.strptime(f"{month} {day} {year} {whole}", "%b %d %Y %H:%M:%S"))
    return seconds * 1_000_000_000 + int(fraction.ljust(9, "0"))


def assert_ntp_shown(text: str, raw: int) -> None:
    expected = ntp_to_ns(raw)
    if raw >> 63 == 0:  # tshark places NTP seconds below 2^31 in era 1 (after 2036, RFC 4330 section 3)
        expected += (1 << 32) * 1_000_000_000
    assert 0 <= expected - shown_ns(text) <= 1  # tshark truncates the fraction


def reflected(
    request: bytes, *, hop_limit: int = 61, error_estimate: ErrorEstimate, session=None, context=None
) -> bytes:
    reply, _dscp = reflect_request(
        request,
        receive_ns=RX_NS,
        transmit_ns=TX_NS,
        error_estimate=error_estimate.encode(),
        hop_limit=hop_limit,
        session=session,
        context=context,
    )
    return reply


def request(seq: int, fmt: TimestampFormat = TimestampFormat.NTP, tlvs=(), ssid: int = 0x0102) -> bytes:
    return encode_sender(SenderPacket(seq, encode_timestamp(T1_NS, fmt), ErrorEstimate(False, fmt, 2, 3), ssid, tlvs))


def test_tshark_reads_our_ntp_reply_fields(tmp_path):
    reply = reflected(request(4321), hop_limit=58, error_estimate=ErrorEstimate(True, TimestampFormat.NTP, 6, 17))
    (row,) = tshark_decode(tmp_path, [reply])
    assert row["seq_number"] == "4321"
    assert row["sender_seq_number"] == "4321"
    assert row["sender_ttl"] == "58"
    assert row["mbz1"] == str(0x0102)  # the SSID
    assert_ntp_shown(row["timestamp"], int.from_bytes(reply[4:12], "big"))
    assert_ntp_shown(row["receive_timestamp"], int.from_bytes(reply[16:24], "big"))
    assert_ntp_shown(row["sender_timestamp"], int.from_bytes(reply[28:36], "big"))
    assert abs(shown_ns(row["timestamp"]) - TX_NS) <= 1
    assert abs(shown_ns(row["receive_timestamp"]) - RX_NS) <= 1
    assert abs(shown_ns(row["sender_timestamp"]) - T1_NS) <= 1


def test_tshark_reads_our_error_estimates(tmp_path):
    reply = reflected(request(1), error_estimate=ErrorEstimate(True, TimestampFormat.NTP, 6, 17))
    (row,) = tshark_decode(tmp_path, [reply])
    assert row["error_estimate"] == str(0x8611)
    assert row["sender_error_estimate"] == str(0x0203)
    # Reflector's bits first, then the sender's.
    assert row["error_estimate.s"] == "1;0"
    assert row["error_estimate.z"] == "0;0"
    assert row["error_estimate.scale"] == "6;2"
    assert row["error_estimate.multiplier"] == "17;3"


def test_tshark_reads_our_ptp_reply_timestamps_exactly(tmp_path):
    reply = reflected(request(9, TimestampFormat.PTP), error_estimate=ErrorEstimate(True, TimestampFormat.NTP, 6, 17))
    (row,) = tshark_decode(tmp_path, [reply])
    assert row["error_estimate.z"] == "1;1"  # the reply follows the request's format
    assert shown_ns(row["timestamp"]) == ptp_to_ns(int.from_bytes(reply[4:12], "big")) == TX_NS
    assert shown_ns(row["receive_timestamp"]) == ptp_to_ns(int.from_bytes(reply[16:24], "big")) == RX_NS


def test_tshark_reads_sender_timestamp_as_ntp_even_when_z_says_ptp(tmp_path):
    reply = reflected(request(9, TimestampFormat.PTP), error_estimate=ErrorEstimate(True, TimestampFormat.PTP, 6, 17))
    (row,) = tshark_decode(tmp_path, [reply])
    sender_raw = int.from_bytes(reply[28:36], "big")
    assert sender_raw == encode_timestamp(T1_NS, TimestampFormat.PTP)
    assert_ntp_shown(row["sender_timestamp"], sender_raw)


def test_tshark_reads_stateful_reflector_sequence_numbers(tmp_path):
    session = SessionCounters()
    err = ErrorEstimate(False, TimestampFormat.NTP, 0, 1)
    replies = [reflected(request(s), session=session, error_estimate=err) for s in (500, 501, 502)]
    rows = tshark_decode(tmp_path, replies)
    assert [(r["seq_number"], r["sender_seq_number"]) for r in rows] == [("0", "500"), ("1", "501"), ("2", "502")]


def test_tshark_shows_mbz_and_tlvs_after_the_ttl_as_padding(tmp_path):
    req = request(1, tlvs=(ClassOfService(46), ExtraPadding(6)))
    reply = reflected(req, error_estimate=ErrorEstimate(), context=ReceivedContext(dscp=10))
    (row,) = tshark_decode(tmp_path, [reply])
    assert row["mbz2"] == "0"
    assert row["padding"] == reply[41:].hex()
    assert reply[41:44] == bytes(3) and reply[44] == 0  # MBZ, then the answered CoS TLV (U cleared)


def test_tshark_reads_a_41_octet_twamp_light_reply(tmp_path):
    reply = reflected(request(77)[:41], hop_limit=3, error_estimate=ErrorEstimate())
    assert len(reply) == 41
    (row,) = tshark_decode(tmp_path, [reply])
    assert (row["seq_number"], row["sender_seq_number"], row["sender_ttl"], row["padding"]) == ("77", "77", "3", "")
    assert abs(shown_ns(row["sender_timestamp"]) - T1_NS) <= 1


def test_tshark_reads_our_encoded_reflector_packet(tmp_path):
    packet = ReflectorPacket(
        seq=0xFFFFFFFE,
        timestamp=encode_timestamp(TX_NS, TimestampFormat.NTP),
        error_estimate=ErrorEstimate(True, TimestampFormat.NTP, 63, 255),
        ssid=0xFFFF,
        receive_timestamp=encode_timestamp(RX_NS, TimestampFormat.NTP),
        sender_seq=0x80000000,
        sender_timestamp=encode_timestamp(T1_NS, TimestampFormat.NTP),
        sender_error_estimate=ErrorEstimate(False, TimestampFormat.NTP, 0, 1),
        sender_ttl=255,
    )
    (row,) = tshark_decode(tmp_path, [encode_reflector(packet)])
    assert (row["seq_number"], row["sender_seq_number"], row["sender_ttl"]) == (str(0xFFFFFFFE), str(0x80000000), "255")
    assert (row["error_estimate"], row["sender_error_estimate"], row["mbz1"]) == (str(0xBFFF), "1", str(0xFFFF))


@pytest.mark.parametrize(("sport", "dport"), [(862, 50000), (50000, 862)], ids=["from-862", "to-862"])
def test_tshark_uses_the_reflector_layout_in_both_directions(tmp_path, sport, dport):
    # A sender packet, decoded as if it were a reflector packet: the SSID lands in mbz1 and
    # the sender's MBZ octets in the receive timestamp, whichever way the packet travels.
    sender = request(12, ssid=0x0A0B)
    (row,) = tshark_decode(tmp_path, [sender], sport=sport, dport=dport)
    assert row["seq_number"] == "12"
    assert abs(shown_ns(row["timestamp"]) - T1_NS) <= 1
    assert row["mbz1"] == str(0x0A0B)
    assert row["sender_seq_number"] == "0"
    assert row["sender_ttl"] == "0"
    assert row["receive_timestamp"] == "Jan  1, 1970 00:00:00.000000000 UTC"  # all-zero octets, shown as "no time"
