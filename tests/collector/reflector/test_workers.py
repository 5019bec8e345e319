"""Reflector workers sharing one port: real processes, real sockets on loopback."""

from __future__ import annotations

import socket
import time
from collections import Counter

import pytest

from collector.reflector.session_reflector import ReflectorConfig, ReflectorStats
from collector.reflector.workers import ReflectorPool, merged, worker_config
from collector.wire.stamp import ErrorEstimate, SenderPacket, decode_reflector, encode_sender, ns_to_ntp
from tests.support import DEADLINE_S

SENDERS = 16  # sender sockets; all on one worker of two happens with probability 2**-15
REQUESTS = 5


def test_each_worker_holds_its_share_of_every_budget():
    config = worker_config(
        ReflectorConfig(rate_limit_pps=1000, rate_burst=200, global_rate_limit_pps=20_000, global_rate_burst=1),
        4,
    )
    assert config.reuse_port
    assert (config.rate_limit_pps, config.rate_burst) == (250, 50)
    assert (config.global_rate_limit_pps, config.global_rate_burst) == (5000, 1)  # never below one packet
    with pytest.raises(ValueError, match="workers"):
        worker_config(ReflectorConfig(), 0)


def test_counters_of_the_workers_add_up():
    a, b = ReflectorStats(reflected=3, received=4), ReflectorStats(reflected=5, received=5, refused_replay=1)
    a.malformed["short"] += 1
    b.malformed["short"] += 2
    b.tlv.unrecognized = 7
    total = merged([a, b])
    assert (total.received, total.reflected, total.refused_replay) == (9, 8, 1)
    assert total.malformed == Counter(short=3) and total.tlv.unrecognized == 7


def test_two_workers_share_the_port_and_keep_each_session_numbered_in_order():
    config = ReflectorConfig(bind=("::1",), port=0, stateful=True, rate_limit_pps=0, global_rate_limit_pps=0)
    senders = []
    with ReflectorPool(config, 2) as pool:
        try:
            for _ in range(SENDERS):
                sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
                sock.settimeout(DEADLINE_S)  # bounds a missing reply only
                senders.append(sock)
            numbers: dict[int, list[int]] = {}
            for index, sock in enumerate(senders):
                for seq in range(REQUESTS):
                    packet = SenderPacket(seq, ns_to_ntp(time.time_ns()), ErrorEstimate(), 7)
                    sock.sendto(encode_sender(packet), ("::1", pool.port))
                    reply = decode_reflector(sock.recv(100))
                    assert reply.sender_seq == seq
                    numbers.setdefault(index, []).append(reply.seq)
            local = pool.local.stats.reflected
        finally:
            for sock in senders:
                sock.close()
    # Each sender's session lived in one worker: its replies are numbered 0, 1, 2, ... with no gap.
    assert all(seqs == list(range(REQUESTS)) for seqs in numbers.values()), numbers
    assert pool.worker_errors == 0
    assert pool.stats.reflected == SENDERS * REQUESTS
    assert 0 < local < SENDERS * REQUESTS  # both workers answered some senders
