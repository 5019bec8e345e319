"""StampSession: request building, reply matching, timeouts and loss direction (no sockets)."""

from __future__ import annotations

import pytest

from collector.contract.records import LossDirection
from collector.probes.stamp_session import DUPLICATE_HORIZON_TIMEOUTS, ReplyFacts, SenderSettings, StampSession
from collector.wire.stamp import ErrorEstimate, decode_sender, ns_to_ntp
from collector.wire.stamp_reflect import SessionCounters
from collector.wire.stamp_tlv import ClassOfService, DirectMeasurement, ExtraPadding, TlvFlag
from tests.stamp_support import reflect_request

T0 = 1_700_000_000_000_000_000
SYNCED = ErrorEstimate.from_seconds(1e-6, synchronized=True)


def reflect(octets: bytes, *, receive_ns: int, transmit_ns: int, session=None) -> bytes:
    reply, _dscp = reflect_request(
        octets,
        receive_ns=receive_ns,
        transmit_ns=transmit_ns,
        error_estimate=SYNCED.encode(),
        hop_limit=60,
        session=session,
    )
    return reply


def facts(receive_ns: int) -> ReplyFacts:
    return ReplyFacts(receive_ns=receive_ns, hop_limit=58, dscp=34)


def test_request_carries_seq_timestamp_ssid_and_slice_dscp():
    session = StampSession(SenderSettings("t", "video", dscp=34, ssid=77))
    seq, octets = session.request(T0)
    packet = decode_sender(octets)
    assert (seq, packet.seq, packet.ssid, packet.timestamp) == (0, 0, 77, ns_to_ntp(T0))
    cos = next(t for t in packet.tlvs if isinstance(t, ClassOfService))
    assert cos.dscp1 == 34 and cos.flags == TlvFlag.UNRECOGNIZED  # senders set U (RFC 8972 4)
    dm = next(t for t in packet.tlvs if isinstance(t, DirectMeasurement))
    assert dm.sender_tx == 1
    assert session.request(T0)[0] == 1


def test_size_pads_with_extra_padding_to_the_exact_length():
    session = StampSession(SenderSettings("t", "s", size=300))
    _, octets = session.request(T0)
    assert len(octets) == 300
    assert any(isinstance(t, ExtraPadding) for t in decode_sender(octets).tlvs)


def test_size_below_the_minimum_is_refused():
    with pytest.raises(ValueError, match="smallest request"):
        StampSession(SenderSettings("t", "s", size=50))


def test_rtt_excludes_reflector_residence_time():
    session = StampSession(SenderSettings("t", "s"))
    _, octets = session.request(T0)
    reply = reflect(octets, receive_ns=T0 + 100_000, transmit_ns=T0 + 900_000)
    [result] = session.on_reply(reply, facts(T0 + 1_000_000))
    # 1 ms wall time, of which 0.8 ms spent in the reflector: 0.2 ms on the network.
    assert abs(result.rtt_ns - 200_000) < 1_000
    assert result.loss is LossDirection.NONE
    assert result.reflector_hop_limit == 60 and result.reply_hop_limit == 58


def test_one_way_delays_only_when_both_clocks_are_synchronised():
    unsynced = StampSession(SenderSettings("t", "s"))
    _, octets = unsynced.request(T0)
    [r] = unsynced.on_reply(reflect(octets, receive_ns=T0 + 300_000, transmit_ns=T0 + 400_000), facts(T0 + 500_000))
    assert r.forward_owd_ns is None and r.reverse_owd_ns is None

    synced = StampSession(SenderSettings("t", "s", error_estimate=SYNCED))
    _, octets = synced.request(T0)
    [r] = synced.on_reply(reflect(octets, receive_ns=T0 + 300_000, transmit_ns=T0 + 400_000), facts(T0 + 500_000))
    assert abs(r.forward_owd_ns - 300_000) < 1_000 and abs(r.reverse_owd_ns - 100_000) < 1_000
    assert r.clock_error_ns == 2 * SYNCED.nanoseconds


def test_kernel_transmit_time_replaces_the_user_space_one():
    session = StampSession(SenderSettings("t", "s"))
    seq, octets = session.request(T0)
    session.on_transmitted(seq, T0 + 50_000)
    [r] = session.on_reply(reflect(octets, receive_ns=T0 + 60_000, transmit_ns=T0 + 60_000), facts(T0 + 150_000))
    assert abs(r.rtt_ns - 100_000) < 1_000


def test_duplicate_reply_is_flagged_and_foreign_ssid_ignored():
    session = StampSession(SenderSettings("t", "s", ssid=5))
    _, octets = session.request(T0)
    reply = reflect(octets, receive_ns=T0 + 10, transmit_ns=T0 + 20)
    assert not session.on_reply(reply, facts(T0 + 100))[0].duplicate
    assert session.on_reply(reply, facts(T0 + 200))[0].duplicate
    other = StampSession(SenderSettings("t", "s", ssid=6))
    _, foreign = other.request(T0)
    assert session.on_reply(reflect(foreign, receive_ns=T0, transmit_ns=T0), facts(T0)) == []
    assert session.foreign_replies == 1


def test_answers_are_remembered_for_duplicates_only_within_two_timeouts():
    """Before, a session kept its last 4,096 answered seqs whatever their age: at a probe
    every 100 ms it held 4,096 after 7 minutes, and every session of an agent grew until then."""
    settings = SenderSettings("t", "s", ssid=5, timeout_ns=1_000_000_000)
    session = StampSession(settings)
    interval = 100_000_000
    first = None
    for i in range(10_000):  # 1,000 s of probes, each answered 1 ms later
        _, octets = session.request(T0 + i * interval)
        reply = reflect(octets, receive_ns=T0 + i * interval, transmit_ns=T0 + i * interval)
        first = first or reply
        assert not session.on_reply(reply, facts(T0 + i * interval + 1_000_000))[0].duplicate
        held = DUPLICATE_HORIZON_TIMEOUTS * settings.timeout_ns // interval + 1
        assert session.remembered_answers <= held
    assert session.remembered_answers == held
    last = T0 + 9_999 * interval
    assert session.on_reply(reply, facts(last + 2_000_000))[0].duplicate  # a copy close behind: still known
    assert session.on_reply(first, facts(last + 3_000_000)) == [] and session.late_replies == 1


def test_garbage_reply_is_counted_not_raised():
    session = StampSession(SenderSettings("t", "s"))
    assert session.on_reply(b"\x01\x02", facts(T0)) == []
    assert session.malformed_replies == 1


def run_with_drops(drop_forward: set[int], drop_reverse: set[int], n: int = 10) -> list:
    """Send n requests 10 us apart (timeout 15 us) through a stateful reflector, dropping
    some requests and some replies."""
    session = StampSession(SenderSettings("t", "s", timeout_ns=15_000))
    reflector = SessionCounters()
    results = []
    for i in range(n):
        seq, octets = session.request(T0 + i * 10_000)
        if seq in drop_forward:
            continue
        reply = reflect(octets, receive_ns=T0 + i * 10_000 + 100, transmit_ns=T0 + i * 10_000 + 200, session=reflector)
        if seq in drop_reverse:
            continue
        results += session.expire(T0 + i * 10_000 + 300)
        results += session.on_reply(reply, facts(T0 + i * 10_000 + 300))
    results += session.flush()
    return results


def test_loss_direction_from_direct_measurement_counters():
    results = run_with_drops(drop_forward={2, 3}, drop_reverse={5})
    lost = {r.seq: r.loss for r in results if r.lost}
    assert lost == {2: LossDirection.FORWARD, 3: LossDirection.FORWARD, 5: LossDirection.REVERSE}
    assert sum(not r.lost for r in results) == 7


def test_losses_after_the_last_reply_have_unknown_direction():
    results = run_with_drops(drop_forward={9}, drop_reverse=set())
    assert [r.loss for r in results if r.lost] == [LossDirection.UNKNOWN]


def test_dead_path_reports_losses_after_two_timeouts_without_any_reply():
    session = StampSession(SenderSettings("t", "s", timeout_ns=1_000))
    session.request(T0)
    assert session.expire(T0 + 1_500) == []  # timed out, waiting one more timeout for a direction
    [lost] = session.expire(T0 + 2_000)
    assert lost.lost and lost.loss is LossDirection.UNKNOWN


def test_icmp_error_settles_the_request_at_once_with_its_reason():
    session = StampSession(SenderSettings("t", "s"))
    seq, _ = session.request(T0)
    [r] = session.on_icmp_error(seq, "port unreachable from ::1")
    assert r.lost and r.loss is LossDirection.FORWARD and r.icmp_error == "port unreachable from ::1"
    assert session.outstanding == 0


def test_a_sender_key_too_short_to_resist_forgery_is_refused():
    with pytest.raises(ValueError, match="a STAMP key needs at least 16 bytes, got 1"):
        SenderSettings("t", "video", auth_key=b"k")


def test_a_transmit_time_of_another_datagram_never_makes_a_negative_round_trip():
    """A send the kernel counted but refused shifts transmit timestamps onto the next
    datagram, whose time can come after this one's reply (the analyzer then refused the
    agent's whole body over a negative RTT sum)."""
    session = StampSession(SenderSettings("t", "s", ssid=5))
    seq, octets = session.request(T0)
    session.on_transmitted(seq, T0 + 8_000_000)  # the next datagram's, 8 ms on
    [r] = session.on_reply(reflect(octets, receive_ns=T0 + 40_000, transmit_ns=T0 + 50_000), facts(T0 + 100_000))
    assert r.rtt_ns == 90_000 and r.sent_ns == T0  # the clock read before the send, less the residence


def test_a_transmit_time_before_the_send_is_not_taken():
    session = StampSession(SenderSettings("t", "s", ssid=5))
    seq, octets = session.request(T0)
    session.on_transmitted(seq, T0 - 1_000)
    [r] = session.on_reply(reflect(octets, receive_ns=T0 + 40_000, transmit_ns=T0 + 50_000), facts(T0 + 100_000))
    assert r.sent_ns == T0
