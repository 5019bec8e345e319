"""The probe request and reply messages: round trips, the bounds a request is refused at
with a reason, and the command line a request stands for."""

from __future__ import annotations

import json

import pytest

from collector.bus.probe_requests import (
    MAX_BATCH_CHARS,
    MAX_BATCH_LINES,
    MAX_LINE_CHARS,
    MAX_REQUEST_BYTES,
    Accepted,
    BadProbeMessage,
    End,
    Line,
    Lines,
    ProbeCancel,
    ProbeStart,
    Refused,
    batches,
    command_args,
    decode_control,
    decode_reply,
    encode_control,
    encode_reply,
    reply_subject,
    request_subject,
    requester_of,
)
from collector.bus.subjects import BadSubject

ID = "a1b2c3d4e5f6"


def start(**fields) -> ProbeStart:
    return ProbeStart(id=ID, **({"kind": "icmp", "target": "fd00::1"} | fields))


@pytest.mark.parametrize(
    "message",
    [
        start(slice="video", count=3, interval=0.2),
        start(kind="trace", target="cnty2b", report=True, count=5, proto="icmp", max_hops=8),
        start(kind="stamp", port=8620, ssid=7, timestamp_format="ptp", json_output=True),
        ProbeCancel(id=ID),
    ],
)
def test_a_control_message_comes_back_as_it_went(message):
    assert decode_control(encode_control(message)) == message


def test_command_args_are_the_local_commands_options_with_the_target_last():
    request = start(kind="trace", target="cnty2b", slice="video", report=True, count=5, json_output=True)
    assert command_args(request) == ["trace", "--slice", "video", "-c", "5", "--report", "--json", "--", "cnty2b"]
    assert command_args(start()) == ["icmp", "--", "fd00::1"]


@pytest.mark.parametrize(
    "fields, reason",
    [
        ({"target": "-c1"}, "target"),
        ({"target": "fd00::1 --json"}, "target"),
        ({"id": "short"}, "id"),
        ({"proto": "udp"}, "icmp probes take no proto"),
        ({"kind": "stamp", "report": True}, "stamp probes take no report"),
        ({"slice": "video", "dscp": 34}, "slice or dscp"),
        ({"dscp": 64}, "dscp"),
        ({"count": 0}, "count"),
        ({"interval": 0}, "interval"),
        ({"kind": "whois"}, "kind"),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_a_bad_request_is_refused_with_a_reason_naming_it(fields, reason):
    body = {"op": "start", "id": ID, "kind": "icmp", "target": "fd00::1"} | fields
    with pytest.raises(BadProbeMessage, match=reason):
        decode_control(json.dumps(body).encode())


def test_a_request_is_bounded_in_size_and_must_be_json():
    with pytest.raises(BadProbeMessage, match=str(MAX_REQUEST_BYTES)):
        decode_control(b" " * (MAX_REQUEST_BYTES + 1))
    with pytest.raises(BadProbeMessage):
        decode_control(b"\xff not json")


@pytest.mark.parametrize(
    "reply",
    [
        Accepted("cnty1a"),
        Refused("no"),
        Refused("full", "busy"),
        Lines((Line("64 bytes"),)),
        Lines((Line("x", "stderr"), Line("{", more=True), Line("}"), Line("", "stderr"))),
        End(1, True),
    ],
)
def test_a_reply_comes_back_as_it_went(reply):
    assert decode_reply(encode_reply(reply)) == reply


def test_a_long_line_is_cut_and_a_bad_reply_refused():
    [line] = decode_reply(encode_reply(Lines((Line("x" * (MAX_LINE_CHARS + 5)),)))).lines
    assert line.text == "x" * MAX_LINE_CHARS
    for data in (
        b"{}",
        b'{"type": "lines", "lines": [{"stream": "tty", "text": ""}]}',
        b'{"type": "lines", "lines": {"stream": "stdout", "text": ""}}',
        b'{"type": "line", "stream": "stdout", "text": ""}',
        json.dumps({"type": "lines", "lines": [{"stream": "stdout", "text": ""}] * (MAX_BATCH_LINES + 1)}).encode(),
        b'{"type": "other"}',
        b'{"type": "refused", "reason": "", "code": "x"}',
        b"[1",
    ):
        with pytest.raises(BadProbeMessage):
            decode_reply(data)


def test_lines_go_in_as_few_batches_as_their_bounds_allow_and_keep_their_order():
    printed = [Line(str(n), "stderr" if n % 7 == 0 else "stdout") for n in range(2 * MAX_BATCH_LINES + 1)]
    sent = list(batches(printed))
    assert [len(b.lines) for b in sent] == [MAX_BATCH_LINES, MAX_BATCH_LINES, 1]
    assert [line for b in sent for line in b.lines] == printed
    parts = [Line("x" * MAX_LINE_CHARS, more=True)] * 3 + [Line("end")]
    sent = list(batches(parts))
    assert all(sum(len(line.text) for line in b.lines) <= MAX_BATCH_CHARS for b in sent)
    assert [line for b in sent for line in b.lines] == parts and len(sent) == 2
    assert list(batches([])) == []


def test_subjects_name_the_site_and_the_requester():
    assert request_subject("cnty1a") == "xnetprobe.cnty1a"
    with pytest.raises(BadSubject):
        request_subject("cnty1a.>")
    reply = reply_subject("operator-noc", ID)
    assert requester_of(reply) == "operator-noc"
    assert requester_of("_XNET_INBOX.analyzer.x") is None
    assert requester_of("_XNET_PROBE.operator-noc.short") is None
