"""The alternate-marking sender: which mark each packet gets, and marked datagrams on a real
socket whose options header the receiving kernel hands back."""

from __future__ import annotations

import json
import socket
import struct

import pytest

from collector.capture.altmark import AltMark, decode_altmark
from collector.capture.altmark_sender import PAYLOAD_MAGIC, AltMarkSender, Marker, main

MS = 1_000_000
RECEIVE_OPTIONS = {"destination": socket.IPV6_RECVDSTOPTS, "hop-by-hop": socket.IPV6_RECVHOPOPTS}


def test_marker_by_packets_puts_one_delay_mark_mid_block():
    marker = Marker(9, block_packets=4)
    marks = [marker.next(0) for _ in range(8)]
    assert [m.loss_flag for _, m in marks] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert [m.delay_flag for _, m in marks] == [False, False, True, False] * 2
    assert [block for block, _ in marks] == [0] * 4 + [1] * 4


def test_marker_by_time_switches_on_the_clock():
    marker = Marker(9, block_ms=10)
    marks = [marker.next(at * MS)[1] for at in (0, 3, 6, 9, 12, 16, 19, 21)]
    assert [m.loss_flag for m in marks] == [0, 0, 0, 0, 1, 1, 1, 0]
    assert [m.delay_flag for m in marks] == [False, False, True, False, False, True, False, False]
    with pytest.raises(ValueError):
        Marker(9)


def test_a_marker_refuses_blocks_that_cannot_be_counted():
    with pytest.raises(ValueError, match="exactly one"):
        Marker(9, block_packets=4, block_ms=10)
    with pytest.raises(ValueError, match="at least one packet"):
        Marker(9, block_packets=0)
    with pytest.raises(ValueError):
        Marker(1 << 20, block_packets=4)  # not a 20-bit FlowMonID


@pytest.mark.parametrize("header", ["destination", pytest.param("hop-by-hop", marks=pytest.mark.root)])
def test_each_datagram_carries_its_mark_in_the_options_header_and_its_sequence(header):
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("::1", 0))
        receiver.settimeout(5)
        receiver.setsockopt(socket.IPPROTO_IPV6, RECEIVE_OPTIONS[header], 1)
        receiver.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVTCLASS, 1)
        with AltMarkSender(
            "::1", receiver.getsockname()[1], Marker(77, block_packets=2), header=header, dscp=34, payload_size=32
        ) as sender:
            report = sender.send(4)
        received = [receiver.recvmsg(128, 256) for _ in range(4)]
    assert (report.sent, report.per_block, report.delay_marked) == (4, [2, 2], 2)
    marks, sequences, classes = [], [], []
    for payload, ancdata, _, _ in received:
        options = next(data for level, kind, data in ancdata if kind != socket.IPV6_TCLASS)
        traffic_class = next(data for level, kind, data in ancdata if kind == socket.IPV6_TCLASS)
        assert options[2:4] == b"\x12\x04" and len(payload) == 32  # the RFC 9343 option, alone
        marks.append(decode_altmark(options[4:8]))
        magic, sequence = struct.unpack_from("!3sQ", payload)
        assert magic == PAYLOAD_MAGIC
        sequences.append(sequence)
        classes.append(struct.unpack("@i", traffic_class)[0] >> 2)
    assert marks == [AltMark(77, 0, False), AltMark(77, 0, True), AltMark(77, 1, False), AltMark(77, 1, True)]
    assert sequences == [0, 1, 2, 3] and classes == [34] * 4


def test_the_command_prints_its_report_as_json_and_refuses_a_bad_flow_mon_id(capsys):
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("::1", 0))
        port = str(receiver.getsockname()[1])
        assert (
            main(
                [
                    "::1",
                    "--port",
                    port,
                    "--flow-mon-id",
                    "5",
                    "--block-packets",
                    "3",
                    "--count",
                    "7",
                    "--interval-ms",
                    "0",
                    "--header",
                    "destination",
                ]
            )
            == 0
        )
        assert json.loads(capsys.readouterr().out) == {
            "sent": 7,
            "per_block": [3, 3, 1],
            "delay_marked": 2,
        }  # the last block ends before its middle
        assert main(["::1", "--port", port, "--flow-mon-id", "-1", "--block-ms", "5", "--count", "1"]) == 2
        assert capsys.readouterr().err.startswith("altmark_sender: ")
