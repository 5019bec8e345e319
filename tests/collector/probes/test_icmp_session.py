"""The echo session's bookkeeping beyond matching (which tests/collector/probes/test_icmp.py
covers): an identifier learnt after bind, scoped addresses, a sequence number reused after
wrapping, slices sharing an address, and the bounded memory of answered requests."""

from __future__ import annotations

import socket

from collector.probes.icmp_session import EchoSession, EchoTarget
from collector.probes.request_log import MOST_REMEMBERED
from collector.probes.stamp_session import DUPLICATE_HORIZON_TIMEOUTS, ReplyFacts
from collector.wire.icmp6 import ECHO_REPLY, Echo, decode_echo, encode_echo

T0 = 1_700_000_000_000_000_000
MS = 1_000_000
ADDRESS = "fd00::1"
SOURCE = socket.inet_pton(socket.AF_INET6, ADDRESS)


def reply_to(request: bytes) -> bytes:
    echo = decode_echo(request)
    return encode_echo(Echo(ECHO_REPLY, echo.identifier, echo.sequence, echo.payload))


def facts(receive_ns: int) -> ReplyFacts:
    return ReplyFacts(receive_ns=receive_ns, hop_limit=61, dscp=26)


def one_target(timeout_ns: int = 100 * MS) -> EchoSession:
    session = EchoSession(identifier=0, cookie=0xC00C1E, timeout_ns=timeout_ns)
    session.add_target(EchoTarget("core", ADDRESS, "egov", 26))
    return session


def test_an_identifier_learnt_after_bind_goes_into_every_later_request_and_match():
    session = one_target()
    session.identifier = 0x1_2345  # a ping socket's port, here wider than 16 bits to show the mask
    _, _, octets = session.request(0, T0)
    assert session.identifier == 0x2345 and decode_echo(octets).identifier == 0x2345
    [result] = session.on_reply(SOURCE, reply_to(octets), facts(T0 + MS))
    assert (result.target, result.slice, result.rtt_ns) == ("core", "egov", MS)


def test_a_scoped_address_is_matched_on_the_address_alone():
    assert EchoTarget("lan", "fe80::1%eth0").packed == socket.inet_pton(socket.AF_INET6, "fe80::1")


def test_an_old_deadline_does_not_expire_a_newer_request_reusing_its_wire_sequence():
    session = one_target(timeout_ns=100 * MS)
    _, old_key, _ = session.request(0, T0)
    session.on_send_error(old_key, "send failed")
    session._logs[0].first = 65537 - 1  # the next request carries sequence 1 on the wire again
    _, new_key, octets = session.request(0, T0 + 50 * MS)
    assert new_key == (0, 65537)
    assert session.expire(T0 + 100 * MS) == []  # the first request's deadline: not the new one's
    [result] = session.on_reply(SOURCE, reply_to(octets), facts(T0 + 60 * MS))
    assert result.seq == 65537 and not result.lost


def test_settled_requests_ignore_later_transmit_times_and_send_errors():
    session = one_target()
    _, key, octets = session.request(0, T0)
    session.on_reply(SOURCE, reply_to(octets), facts(T0 + MS))
    session.on_transmitted(key, T0 + 500)
    assert session.on_send_error(key, "too late") == []
    assert session.flush() == []


def test_duplicates_are_recognised_only_within_the_bounded_memory():
    session = one_target()
    _, _, first = session.request(0, T0)
    session.on_reply(SOURCE, reply_to(first), facts(T0 + MS))
    session.expire(T0 + 100 * MS)  # its timeout checked: it may be forgotten
    for _ in range(MOST_REMEMBERED):  # as many answered requests again, within the horizon
        _, _, octets = session.request(0, T0 + 100 * MS)
        session.on_reply(SOURCE, reply_to(octets), facts(T0 + 101 * MS))
        session.expire(T0 + 200 * MS)
    [again] = session.on_reply(SOURCE, reply_to(octets), facts(T0 + 102 * MS))
    assert again.duplicate and again.target == "core"
    assert session.on_reply(SOURCE, reply_to(first), facts(T0 + 102 * MS)) == []  # forgotten: late
    assert session.late_replies == 1


def test_slices_probing_one_address_each_get_their_own_replies():
    """Each target numbers its own requests, so two slices to one address send the same
    sequence numbers: a reply goes to the target its request named (one slice's reply used to
    settle the other's request when both were outstanding)."""
    session = one_target()
    other = session.add_target(EchoTarget("core", ADDRESS, "video", 34))
    _, _, egov = session.request(0, T0)
    _, _, video = session.request(other, T0 + MS)
    [first] = session.on_reply(SOURCE, reply_to(video), facts(T0 + 2 * MS))
    [second] = session.on_reply(SOURCE, reply_to(egov), facts(T0 + 3 * MS))
    assert (first.slice, second.slice) == ("video", "egov") and session.outstanding == 0
    assert (first.rtt_ns, second.rtt_ns) == (MS, 3 * MS)


def test_one_slice_s_loss_stays_its_own_when_another_slice_to_the_address_is_answered():
    """A DSCP drop on one slice: its request is never answered, the other slice's request of
    the same number is; the loss is the first slice's, the answer the second's."""
    session = one_target(timeout_ns=100 * MS)
    other = session.add_target(EchoTarget("core", ADDRESS, "video", 34))
    session.request(0, T0)  # egov, seq 1: dropped on the way
    _, _, video = session.request(other, T0 + 30 * MS)  # video, seq 1 as well
    [answered] = session.on_reply(SOURCE, reply_to(video), facts(T0 + 35 * MS))
    assert (answered.slice, answered.rtt_ns) == ("video", 5 * MS)
    [lost] = session.expire(T0 + 200 * MS)
    assert lost.slice == "egov" and lost.rtt_ns is None


def test_answers_are_remembered_for_duplicates_two_timeouts_after_they_were_sent():
    session = one_target(timeout_ns=100 * MS)
    _, _, first = session.request(0, T0)
    session.on_reply(SOURCE, reply_to(first), facts(T0 + MS))
    held = DUPLICATE_HORIZON_TIMEOUTS * 100 * MS
    session.expire(T0 + held)
    _, _, within = session.request(0, T0 + held)  # the first is exactly at the horizon: kept
    session.on_reply(SOURCE, reply_to(within), facts(T0 + held + MS))
    [copy] = session.on_reply(SOURCE, reply_to(first), facts(T0 + held + 2 * MS))
    assert copy.duplicate
    _, _, later = session.request(0, T0 + held + 1)  # one nanosecond on: the first is forgotten
    session.on_reply(SOURCE, reply_to(later), facts(T0 + held + 3 * MS))
    assert session.on_reply(SOURCE, reply_to(first), facts(T0 + held + 4 * MS)) == []
    assert session.late_replies == 1


def test_a_transmit_time_later_than_the_reply_is_another_datagrams_and_not_taken():
    session = one_target()
    _, key, octets = session.request(0, T0)
    session.on_transmitted(key, T0 + 8 * MS)  # a shifted match: the next datagram's time
    [r] = session.on_reply(SOURCE, reply_to(octets), facts(T0 + MS))
    assert r.rtt_ns == MS and r.sent_ns == T0
    _, key, octets = session.request(0, T0 + 10 * MS)
    session.on_transmitted(key, T0 + 10 * MS + 20_000)  # a plausible one is taken
    [r] = session.on_reply(SOURCE, reply_to(octets), facts(T0 + 11 * MS))
    assert r.rtt_ns == MS - 20_000
