"""`xnetmon capture` in-process: the alternate-marking report of a marked capture, --top,
column alignment, and the options it refuses. (tests/xnetmon/test_capture_command.py runs
the command on slice captures and live in a namespace.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scapy.all import UDP, Ether, IPv6, IPv6ExtHdrDestOpt, Raw, wrpcap

from collector.capture.altmark import AltMark, encode_altmark
from tests.flow_export_support import write_slice_pcap
from xnetmon.cli import main
from xnetmon.commands.capture import _table


def marked_capture(path: Path) -> Path:
    """Six packets of FlowMonID 42: three of colour 0 (the second delay-marked), three of colour 1."""
    packets = []
    for n in range(6):
        option = encode_altmark(AltMark(42, n // 3, n % 3 == 1))
        packet = (
            Ether()
            / IPv6(src="2001:db8::1", dst="2001:db8::2", tc=26 << 2)
            / IPv6ExtHdrDestOpt(nh=17, autopad=0, options=[])
            / UDP(sport=5000, dport=9)
            / Raw(b"x" * 20)
        )
        raw = bytearray(bytes(packet))
        raw[14 + 40 + 2 : 14 + 40 + 8] = option  # the options header holds only the mark
        frame = Ether(bytes(raw))
        frame.time = 1_700_000_000 + n * 0.001
        packets.append(frame)
    wrpcap(str(path), packets)
    return path


def test_a_marked_capture_reports_its_packets_per_colour(tmp_path, capsys):
    assert main(["capture", "read", str(marked_capture(tmp_path / "m.pcap")), "--altmark-point", "edge", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["altmark"]["point"] == "edge"
    assert report["altmark"]["packets"] == [
        {"flow_mon_id": 42, "colour": 0, "packets": 3},
        {"flow_mon_id": 42, "colour": 1, "packets": 3},
    ]
    assert report["slices"]["egov"]["packets"] == 6
    assert main(["capture", "read", str(tmp_path / "m.pcap"), "--altmark-point", "edge"]) == 0
    assert "alternate marking at edge: " in capsys.readouterr().out


def test_top_limits_the_flows_shown(tmp_path, capsys):
    capture = tmp_path / "slices.pcap"
    write_slice_pcap(capture, flows_per_slice=2, packets_per_flow=3)
    assert main(["capture", "read", str(capture), "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "top 3 flows by bytes" in out
    assert len(out.split("top 3 flows by bytes")[1].strip().splitlines()) == 1 + 3


def test_numbers_align_right_and_text_left(capsys):
    _table(["slice", "packets"], [["video", 1234], ["best-effort", 5]])
    assert capsys.readouterr().out.splitlines() == [
        "slice        packets",
        "video          1,234",
        "best-effort        5",
    ]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--slice-option", "0x1ff"], "--slice-option 0x1ff is not an option type (0..0xff)"),
        (["--idle-timeout", "-1"], "xnetmon capture: "),
    ],
)
def test_options_out_of_range_are_usage_errors(tmp_path, capsys, argv, message):
    capture = tmp_path / "slices.pcap"
    write_slice_pcap(capture, flows_per_slice=1, packets_per_flow=1)
    assert main(["capture", "read", str(capture), *argv]) == 2
    assert message in capsys.readouterr().err


def test_a_sample_rate_below_one_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit):
        main(["capture", "live", "lo", "--sample", "0"])
    assert "0 is not 1 or more" in capsys.readouterr().err
