"""The reflector over real UDP sockets on loopback: answers, state, policy, and bad input."""

from __future__ import annotations

import select
import socket
import struct
import time

import pytest

from collector.reflector import session_reflector
from collector.reflector.session_reflector import MAX_DATAGRAM, Reflector, ReflectorConfig, _Endpoint
from collector.system import mmsg
from collector.system.clock import shared_host_clock
from collector.system.measurement_sockets import IP_PKTINFO, enable_receive_metadata, parse_ancillary, set_traffic_class
from collector.wire.stamp import (
    AUTH_BASE_LEN,
    ErrorEstimate,
    SenderPacket,
    decode_reflector,
    encode_sender,
    ns_to_ntp,
)
from collector.wire.stamp_tlv import ClassOfService, DirectMeasurement, ExtraPadding, FollowUpTelemetry, HmacTlv
from tests.support import DEADLINE_S, wait_until

KEY = b"extranet-test-key"


def handled(reflector: Reflector) -> int:
    """Requests the reflector is done with: answered, refused or found malformed. It counts a
    reply after sending it, so the client may see the reply first."""
    stats = reflector.stats
    return (
        stats.reflected
        + stats.send_errors
        + stats.refused_not_allowed
        + stats.refused_rate_limited
        + stats.refused_global_rate_limited
        + stats.refused_replay
        + stats.refused_stale
        + sum(stats.malformed.values())
    )


def request(seq: int, *, ssid: int = 9, tlvs=(), key=None, authenticated=False) -> bytes:
    packet = SenderPacket(seq, ns_to_ntp(time.time_ns()), ErrorEstimate(), ssid, tuple(tlvs))
    return encode_sender(packet, key, authenticated=authenticated)


class Client:
    def __init__(self, port: int, family=socket.AF_INET6, host="::1") -> None:
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        enable_receive_metadata(self.sock)
        self.sock.settimeout(DEADLINE_S)  # bounds a missing reply only
        self.target = (host, port)

    def ask(self, octets: bytes):
        self.sock.sendto(octets, self.target)
        data, anc, _flags, _addr = self.sock.recvmsg(4096, 256)
        return data, parse_ancillary(anc)

    def silent(self, octets: bytes, reflector: Reflector) -> bool:
        """True if the reflector, once done with `octets`, sent nothing back."""
        before = handled(reflector)
        self.sock.sendto(octets, self.target)
        wait_until(lambda: handled(reflector) > before, what="the reflector handling the request")
        return not self.waiting()  # a reply would have arrived before the request was counted

    def waiting(self) -> bool:
        """A datagram is there to read."""
        return bool(select.select([self.sock], [], [], 0)[0])


@pytest.fixture
def reflector_factory():
    running = []

    def start(**overrides) -> Reflector:
        config = ReflectorConfig(**{"bind": ("::1",), "port": 0, **overrides})
        running.append(Reflector(config).start())
        return running[-1]

    yield start
    for reflector in running:
        reflector.stop()


def test_stateless_reflector_echoes_the_senders_number(reflector_factory):
    client = Client(reflector_factory().port)
    for seq in (5, 9):
        data, meta = client.ask(request(seq))
        reply = decode_reflector(data)
        assert reply.seq == seq and reply.sender_seq == seq and reply.ssid == 9
        assert len(data) == 44 and meta.hop_limit == 255


def test_stateful_reflector_numbers_each_session_from_zero(reflector_factory):
    r = reflector_factory(stateful=True)
    a, b = Client(r.port), Client(r.port)
    assert [decode_reflector(a.ask(request(s))[0]).seq for s in (10, 11, 12)] == [0, 1, 2]
    assert decode_reflector(b.ask(request(40))[0]).seq == 0  # another source port: another session
    assert decode_reflector(a.ask(request(13, ssid=10))[0]).seq == 0  # another SSID too
    assert r.session_count == 3


SO_MEMINFO = 55  # Linux; Python's socket module does not name it


def queued_memory(sock: socket.socket) -> int:
    """The memory the socket's receive queue holds (SO_MEMINFO's rmem_alloc)."""
    return struct.unpack("9I", sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, 36))[0]


def send_burst(client: socket.socket, server: socket.socket, requests: list[bytes]) -> None:
    """Send the requests and return once all of them wait in the server's queue: each one,
    whatever its size, adds to the memory the queue holds."""
    address = server.getsockname()[:2]
    for octets in requests:
        before = queued_memory(server)
        client.sendto(octets, address)
        deadline = time.monotonic() + DEADLINE_S
        while queued_memory(server) <= before:
            assert time.monotonic() < deadline, "the burst did not arrive"
            time.sleep(0.001)


class CountingBatch(mmsg.DatagramBatch):
    """A batch that records how many datagrams each receive took."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.counts: list[int] = []

    def receive(self, fd: int) -> int:
        self.counts.append(super().receive(fd))
        return self.counts[-1]


def reflect_one_burst(requests: list[bytes]) -> tuple[list[int], list]:
    """The stateful reflector's batch function, driven directly on a real socket, so that the
    whole burst is waiting before the first receive (as a sender probing every millisecond
    sees it): the batch sizes received, and the decoded replies in order. No limits, so plain
    requests take the lean path."""
    config = ReflectorConfig(bind=("::1",), port=0, stateful=True, rate_limit_pps=0, global_rate_limit_pps=0)
    reflector = Reflector(config)
    server = reflector._open("::1")
    client = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    client.settimeout(1.0)
    batch = CountingBatch(size=MAX_DATAGRAM)
    try:
        send_burst(client, server, requests)
        reflector._drain_batch(_Endpoint.of(server, "::1"), batch)
        return batch.counts, [decode_reflector(client.recv(4096)) for _ in requests]
    finally:
        client.close()
        server.close()
        reflector.stop()


def assert_numbered_and_followed_up(ssids, replies) -> None:
    """Each session's replies take 0, 1, 2, ... in order, and a reply's Follow-up Telemetry
    (where it asked for one) names its session's reply before it, with that reply's T3."""
    nth = [ssids[:i].count(ssid) for i, ssid in enumerate(ssids)]
    assert [r.seq for r in replies] == nth
    for i, reply in enumerate(replies):
        assert reply.timestamp >= reply.receive_timestamp  # T3 is never before T2
        follow_up = reply.tlv(FollowUpTelemetry) if reply.tlvs else None
        if follow_up is not None:
            previous = [r for r in replies[:i] if r.ssid == reply.ssid]
            expected = (previous[-1].seq, previous[-1].timestamp) if previous else (0, 0)
            assert (follow_up.sequence_number, follow_up.timestamp) == expected


@pytest.mark.skipif(not mmsg.available(), reason="recvmmsg/sendmmsg need Linux on a 64-bit ABI")
@pytest.mark.parametrize("ssids", [(9,) * 6, (9, 10) * 3], ids=["one session", "two sessions interleaved"])
def test_requests_of_a_session_received_in_one_batch_take_consecutive_numbers(ssids):
    nth = [ssids[:i].count(ssid) for i, ssid in enumerate(ssids)]
    counts, replies = reflect_one_burst(
        [
            request(100 + i, ssid=ssid, tlvs=[DirectMeasurement(sender_tx=nth[i] + 1), FollowUpTelemetry()])
            for i, ssid in enumerate(ssids)
        ]
    )
    assert counts == [len(ssids), 0]  # one batch held the whole burst
    assert [(r.sender_seq, r.ssid) for r in replies] == [(100 + i, ssid) for i, ssid in enumerate(ssids)]
    counters = [r.tlv(DirectMeasurement) for r in replies]
    assert [(dm.reflector_rx, dm.reflector_tx) for dm in counters] == [(n + 1, n + 1) for n in nth]
    assert_numbered_and_followed_up(ssids, replies)


@pytest.mark.skipif(not mmsg.available(), reason="recvmmsg/sendmmsg need Linux on a 64-bit ABI")
@pytest.mark.parametrize(
    "with_tlvs",
    [(False,) * 6, (False, False, True, False, True, False), (True, False, False, True, True, False)],
    ids=["plain requests", "plain then follow-up", "follow-up first"],
)
def test_plain_requests_take_their_numbers_in_the_burst_and_a_later_follow_up_names_the_last_reply(with_tlvs):
    # Plain 44-octet requests take the lean path, which numbers a reply as it is rewritten and
    # stamps T3 with the burst's; a follow-up request behind one must still see its number and
    # the T3 that reply leaves with.
    ssids = (9, 10) * 3
    counts, replies = reflect_one_burst(
        [
            request(100 + i, ssid=ssid, tlvs=[FollowUpTelemetry()] if tlvs else [])
            for i, (ssid, tlvs) in enumerate(zip(ssids, with_tlvs, strict=True))
        ]
    )
    assert counts == [len(ssids), 0]
    assert [(r.sender_seq, r.ssid) for r in replies] == [(100 + i, ssid) for i, ssid in enumerate(ssids)]
    assert_numbered_and_followed_up(ssids, replies)


@pytest.mark.skipif(not mmsg.available(), reason="recvmmsg/sendmmsg need Linux on a 64-bit ABI")
@pytest.mark.parametrize("stateful", [False, True], ids=["stateless", "stateful"])
def test_plain_replies_of_one_burst_each_leave_in_their_requests_class(stateful):
    # The lean path keeps the last reply's ancillary data while the class stays the same: a
    # change of class within a burst must still give each reply its own.
    config = ReflectorConfig(bind=("::1",), port=0, stateful=stateful, rate_limit_pps=0, global_rate_limit_pps=0)
    reflector = Reflector(config)
    server = reflector._open("::1")
    clients = [Client(server.getsockname()[1]) for _ in range(2)]
    for client, dscp in zip(clients, (26, 46), strict=True):
        set_traffic_class(client.sock, dscp << 2)
    try:
        for k in range(6):  # 26, 26, 46, 46, 26, 26
            sender = clients[(k // 2) % 2]
            send_burst(sender.sock, server, [request(k, ssid=5)])
        reflector._drain_batch(_Endpoint.of(server, "::1"), mmsg.DatagramBatch(size=MAX_DATAGRAM))
        for client, dscp, seqs in zip(clients, (26, 46), ([0, 1, 4, 5], [2, 3]), strict=True):
            replies = [client.sock.recvmsg(4096, 256) for _ in seqs]
            assert [parse_ancillary(anc).dscp for _data, anc, _flags, _addr in replies] == [dscp] * len(seqs)
            assert [decode_reflector(data).sender_seq for data, *_rest in replies] == seqs
    finally:
        for client in clients:
            client.sock.close()
        server.close()
        reflector.stop()


def test_direct_measurement_counts_the_sessions_packets(reflector_factory):
    client = Client(reflector_factory(stateful=True).port)
    for seq in range(3):
        data, _ = client.ask(request(seq, tlvs=[DirectMeasurement(sender_tx=seq + 1)]))
    dm = decode_reflector(data).tlv(DirectMeasurement)
    assert (dm.sender_tx, dm.reflector_rx, dm.reflector_tx) == (3, 3, 3)


def test_reply_uses_the_requested_dscp_and_reports_the_received_one(reflector_factory):
    client = Client(reflector_factory().port)
    set_traffic_class(client.sock, 26 << 2)
    data, meta = client.ask(request(1, tlvs=[ClassOfService(dscp1=46)]))
    cos = decode_reflector(data).tlv(ClassOfService)
    assert cos.dscp2 == 26 and cos.rp == 0 and cos.flags == 0
    assert meta.dscp == 46


def test_reply_without_class_of_service_comes_back_in_the_received_class(reflector_factory):
    client = Client(reflector_factory().port)
    set_traffic_class(client.sock, 34 << 2)
    _data, meta = client.ask(request(1))
    assert meta.dscp == 34


def test_refused_dscp_sets_rp_and_keeps_the_received_class(reflector_factory):
    client = Client(reflector_factory(permitted_dscp=frozenset({0, 26})).port)
    set_traffic_class(client.sock, 26 << 2)
    data, meta = client.ask(request(1, tlvs=[ClassOfService(dscp1=46)]))
    assert decode_reflector(data).tlv(ClassOfService).rp == 1
    assert meta.dscp == 26


def test_reply_is_never_larger_than_the_request(reflector_factory):
    client = Client(reflector_factory().port)
    for octets in (request(1)[:41], request(2), request(3, tlvs=[ExtraPadding(1000)])):
        data, _ = client.ask(octets)
        assert len(data) == len(octets)


def test_malformed_datagrams_are_counted_and_the_reflector_keeps_answering(reflector_factory):
    r = reflector_factory()
    client = Client(r.port)
    assert client.silent(b"short", r)
    zero_multiplier = bytearray(request(1))
    zero_multiplier[13] = 0
    assert client.silent(bytes(zero_multiplier), r)
    assert decode_reflector(client.ask(request(2))[0]).sender_seq == 2
    r.stop()  # the reply is counted once sent, which the client may see first; a stop waits for it
    assert r.stats.malformed == {"short": 1, "error-estimate": 1}
    assert r.stats.reflected == 1


def test_allow_list_refuses_other_sources(reflector_factory):
    r = reflector_factory(allow=("2001:db8::/32",))
    assert Client(r.port).silent(request(1), r)
    assert r.stats.refused_not_allowed == 1
    r2 = reflector_factory(allow=("::1/128",))
    assert Client(r2.port).ask(request(1))[0]


def test_rate_limit_per_source(reflector_factory):
    r = reflector_factory(rate_limit_pps=1, rate_burst=3)
    client = Client(r.port)
    answered = 0
    for seq in range(6):
        client.sock.sendto(request(seq), client.target)
    wait_until(lambda: handled(r) == 6, what="the reflector handling all six requests")
    while client.waiting():
        client.sock.recv(4096)
        answered += 1
    assert answered == 3 and r.stats.refused_rate_limited == 3


def test_authenticated_mode_answers_only_correct_hmacs(reflector_factory):
    r = reflector_factory(auth_key=KEY)
    client = Client(r.port)
    data, _ = client.ask(request(7, key=KEY, authenticated=True, tlvs=[HmacTlv()]))
    reply = decode_reflector(data, authenticated=True)
    assert len(data) == AUTH_BASE_LEN + 20 and reply.sender_seq == 7
    assert client.silent(request(8, key=b"wrong key", authenticated=True), r)
    assert r.stats.malformed["auth"] == 1


def test_ipv4_binding_answers_ipv4_senders(reflector_factory):
    r = reflector_factory(bind=("127.0.0.1",))
    client = Client(r.port, socket.AF_INET, "127.0.0.1")
    data, meta = client.ask(request(3))
    assert decode_reflector(data).sender_seq == 3 and meta.hop_limit == 255


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="allow: 'not-a-prefix'"):
        ReflectorConfig(allow=("not-a-prefix",))


# -- hostile input: forged, sprayed, spoofed and replayed requests ---------------------------

SPRAY_CHUNK = 1000  # requests in flight at once: well within the reflector's receive buffer


def spray(reflector: Reflector, requests: list[bytes], first_source: str = "127.1.0.0") -> None:
    """Send each request from its own loopback source address, counting up from
    `first_source` (IPv4: all of 127/8 is local, so replies stay on this host), as an
    attacker who forges source addresses would; return once the reflector is done with all."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    target = ("127.0.0.1", reflector.port)
    base = struct.unpack("!I", socket.inet_aton(first_source))[0]
    before = handled(reflector)
    try:
        sock.bind(("0.0.0.0", 0))
        for i, octets in enumerate(requests):
            source = struct.pack("!I", base + i)
            pktinfo = struct.pack("@i4s4s", 0, source, bytes(4))  # ipi_spec_dst: the source address
            sock.sendmsg([octets], [(socket.IPPROTO_IP, IP_PKTINFO, pktinfo)], 0, target)
            if (i + 1) % SPRAY_CHUNK == 0 or i + 1 == len(requests):
                wait_until(lambda done=before + i + 1: handled(reflector) >= done, interval=0.002, what="the spray")
    finally:
        sock.close()


def answered(client: Client, octets: bytes, reflector: Reflector) -> bool:
    """Whether the reflector answered `octets` (the reply, if any, is read)."""
    if client.silent(octets, reflector):
        return False
    client.sock.recv(4096)
    return True


def test_forged_unsigned_requests_do_not_spend_a_signed_senders_budget(reflector_factory):
    # 300 unsigned requests from the agent's own address (another port), then its signed probes.
    r = reflector_factory(auth_key=KEY, rate_limit_pps=1, rate_burst=200)
    agent, forger = Client(r.port), Client(r.port)
    for seq in range(300):
        forger.sock.sendto(request(seq, authenticated=True, key=b"not the key"), forger.target)
    wait_until(lambda: handled(r) == 300, what="the reflector handling the forgeries")
    assert r.stats.malformed["auth"] == 300 and r.stats.refused_rate_limited == 0
    replies = [
        decode_reflector(agent.ask(request(s, key=KEY, authenticated=True))[0], authenticated=True) for s in range(5)
    ]
    assert [reply.sender_seq for reply in replies] == list(range(5))


def test_spraying_source_addresses_resets_nobodys_bucket(reflector_factory):
    # A source spends its burst; 65,538 other sources (more than the bucket table holds) follow.
    r = reflector_factory(bind=("127.0.0.1",), rate_limit_pps=0.001, rate_burst=3, global_rate_limit_pps=0)
    abuser = Client(r.port, socket.AF_INET, "127.0.0.1")
    assert [answered(abuser, request(s), r) for s in range(4)] == [True, True, True, False]
    spray(r, [request(0)] * 65_538)
    assert r.stats.reflected > 65_536  # the sprayed sources are answered, within their own budgets
    assert not answered(abuser, request(5), r)  # the abuser's bucket is still empty
    assert r._limiter is not None and r._limiter.tracked_prefixes == 65_536  # bounded


def test_addresses_of_one_prefix_share_one_budget(reflector_factory):
    r = reflector_factory(bind=("127.0.0.1",), rate_limit_pps=0.001, rate_burst=3, rate_prefix_v4=24)
    spray(r, [request(s) for s in range(10)], first_source="127.0.1.1")  # ten addresses of one /24
    assert r.stats.refused_rate_limited == 7


def test_a_spray_of_sources_is_held_to_the_global_limit(reflector_factory):
    r = reflector_factory(bind=("127.0.0.1",), global_rate_limit_pps=0.001, global_rate_burst=100)
    spray(r, [request(0)] * 1000)
    assert r.stats.refused_global_rate_limited == 900 and r.stats.refused_rate_limited == 0
    r.stop()  # replies are counted once sent
    assert r.stats.reflected + r.stats.send_errors == 100


def test_spoofed_sessions_do_not_evict_an_established_session(reflector_factory):
    r = reflector_factory(bind=("127.0.0.1",), stateful=True, rate_limit_pps=0, global_rate_limit_pps=0)
    agent = Client(r.port, socket.AF_INET, "127.0.0.1")
    assert [decode_reflector(agent.ask(request(s))[0]).seq for s in range(3)] == [0, 1, 2]
    spray(r, [request(0)] * 100_001)  # one new session per spoofed address, beyond the default bound
    assert decode_reflector(agent.ask(request(3))[0]).seq == 3  # the agent's session kept its numbering
    assert r.session_count <= 150_000


def test_a_replayed_signed_request_is_refused(reflector_factory):
    r = reflector_factory(auth_key=KEY, stateful=True, clock=shared_host_clock())
    agent, attacker = Client(r.port), Client(r.port)
    recorded = [request(s, key=KEY, authenticated=True) for s in range(3)]
    for octets in recorded:
        assert decode_reflector(agent.ask(octets)[0], authenticated=True).sender_seq >= 0
    # Byte for byte again, from the agent's own address and port (as a man in the middle would).
    attacker.sock.close()
    for octets in recorded:
        assert agent.silent(octets, r)
    assert r.stats.refused_replay == 3
    # A request the reflector has not seen is still answered, also when it comes late.
    late = request(7, key=KEY, authenticated=True)
    assert decode_reflector(agent.ask(request(8, key=KEY, authenticated=True))[0], authenticated=True).sender_seq == 8
    assert decode_reflector(agent.ask(late)[0], authenticated=True).sender_seq == 7
    assert agent.silent(late, r)
    assert r.stats.refused_replay == 4


def test_a_sender_that_numbers_again_from_zero_is_answered(reflector_factory):
    r = reflector_factory(auth_key=KEY, clock=shared_host_clock())
    agent = Client(r.port)
    for seq in (100, 101, 0):  # 0: the sender restarted on the same port; its timestamp is newer
        assert (
            decode_reflector(agent.ask(request(seq, key=KEY, authenticated=True))[0], authenticated=True).sender_seq
            == seq
        )
    assert r.stats.refused_replay == 0


def test_a_signed_request_older_than_the_freshness_window_is_stale(reflector_factory):
    r = reflector_factory(auth_key=KEY, clock=shared_host_clock(), replay_max_age_s=30)
    agent = Client(r.port)
    synced = ErrorEstimate(synchronized=True)

    def signed(age_s: float) -> bytes:
        sent_ns = time.time_ns() - int(age_s * 1e9)
        return encode_sender(SenderPacket(1, ns_to_ntp(sent_ns), synced, 9, ()), KEY, authenticated=True)

    assert agent.silent(signed(120), r)  # recorded two minutes ago: a new session does not make it new
    assert r.stats.refused_stale == 1
    assert decode_reflector(agent.ask(signed(0))[0], authenticated=True).sender_seq == 1


def test_a_spray_of_sources_does_not_empty_the_allow_list_cache(reflector_factory, monkeypatch):
    monkeypatch.setattr(session_reflector, "ALLOW_CACHE_SIZE", 100)
    r = reflector_factory(bind=("127.0.0.1",), allow=("127.0.0.1/32",), global_rate_limit_pps=0)
    agent = Client(r.port, socket.AF_INET, "127.0.0.1")
    assert answered(agent, request(1), r)
    spray(r, [request(0)] * 99, first_source="127.1.0.0")  # fills the cache to its bound
    assert b"\x7f\x00\x00\x01" in r._allow_cache and len(r._allow_cache) == 100
    spray(r, [request(0)] * 10, first_source="127.2.0.0")  # beyond it: only the oldest entries go
    assert len(r._allow_cache) == 100 and r.stats.refused_not_allowed == 109


@pytest.mark.parametrize("stateful", [False, True], ids=["stateless", "stateful"])
def test_a_failure_while_sealing_a_reply_is_counted_and_the_reflector_keeps_answering(
    reflector_factory, monkeypatch, stateful
):
    real = session_reflector.stamp_transmit_time
    calls = []

    def fails_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a sealing bug")
        return real(*args, **kwargs)

    monkeypatch.setattr(session_reflector, "stamp_transmit_time", fails_once)
    r = reflector_factory(stateful=stateful, auth_key=KEY)
    client = Client(r.port)
    assert client.silent(request(1, key=KEY, authenticated=True), r)
    assert r.stats.malformed["internal"] == 1
    reply = decode_reflector(client.ask(request(2, key=KEY, authenticated=True))[0], authenticated=True)
    assert reply.sender_seq == 2


@pytest.mark.parametrize("field", ["auth_key", "hmac_tlv_key"])
def test_a_key_too_short_to_resist_forgery_is_refused(field):
    with pytest.raises(ValueError, match=rf"{field}: a STAMP key needs at least 16 bytes, got 1"):
        ReflectorConfig(**{field: b"k"})
    ReflectorConfig(**{field: b"k" * 16})
